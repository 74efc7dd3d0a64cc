//! The work queue: durable publish with publisher confirms, and competing consumers with
//! manual acknowledgement, bounded prefetch, requeue and dead-lettering after a bounded number
//! of deliveries. Three adapters obey one contract, proven by the same test suite: RabbitMQ
//! (`amqp://…`), in-process (`memory://`), and in-process kept in a SQLite file
//! (`sqlite://<path>`, the durable queue of the one-process run).

mod amqp;
pub mod bundle;
mod dead_letter_gauge;
mod depth_gauge;
mod inspect;
mod journal;
mod memory;
pub mod runner;
mod sqlite;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;

pub use amqp::AmqpQueue;
pub use dead_letter_gauge::DeadLetterGauge;
pub use depth_gauge::QueueDepthGauge;
pub use inspect::{DeadLetter, DeadLetters, Death, RedriveError, Selection};
pub use memory::MemoryQueue;
pub use sqlite::SqliteQueue;

/// The gauges of the queues a service consumes, run together until stopped: their dead
/// letters (every [`DeadLetterGauge::INTERVAL`]) and their depth (every
/// [`crate::telemetry::metrics::POLL_INTERVAL`]). Every consuming service runs one.
#[derive(Debug)]
pub struct ConsumedQueueGauges {
    dead_letters: DeadLetterGauge,
    depth: QueueDepthGauge,
}

impl ConsumedQueueGauges {
    /// The gauges of `consumed`, on `queue`.
    pub fn new<S: Into<String>>(queue: Arc<dyn WorkQueue>, consumed: impl IntoIterator<Item = S>) -> Self {
        let consumed: Vec<String> = consumed.into_iter().map(Into::into).collect();
        Self {
            dead_letters: DeadLetterGauge::new(Arc::clone(&queue), consumed.iter().cloned()),
            depth: QueueDepthGauge::new(queue, consumed),
        }
    }

    /// Reads both until `stop`.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        tokio::join!(
            self.dead_letters.run(DeadLetterGauge::INTERVAL, stop.clone()),
            self.depth.run(crate::telemetry::metrics::POLL_INTERVAL, stop),
        );
    }
}

/// One message on a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Unique id of the message (the AMQP `message_id`); consumers dedupe on it, and the outbox
    /// uses its row id here so that a republished row keeps its id.
    pub id: String,
    /// What the payload is, e.g. `shop.events.v1.ReserveStock` (the AMQP `type` property).
    pub kind: String,
    /// The encoded payload (protobuf).
    pub payload: Vec<u8>,
    /// String headers: W3C trace context (`traceparent`, `tracestate`) and the like.
    pub headers: BTreeMap<String, String>,
}

/// The most messages a dead-letter queue holds unless told otherwise.
pub const DEFAULT_DEAD_LETTER_MAX_LENGTH: u32 = 100_000;

/// The shape of a queue: its name, how many deliveries a message gets before it goes to the
/// dead-letter queue, and how many dead letters that queue keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue's name, e.g. `stock.reserve`.
    pub name: String,
    /// Deliveries a message may have (the first one included) before it is dead-lettered.
    pub max_deliveries: u32,
    /// The most messages its dead-letter queue holds; beyond it the oldest are dropped. Applied
    /// by RabbitMQ (`x-max-length`, `x-overflow: drop-head`) to a dead-letter queue it creates;
    /// one that exists without it is kept as it is (see [`AmqpQueue`]). The in-process queues
    /// do not bound their dead letters.
    pub dead_letter_max_length: u32,
}

impl QueueSpec {
    /// A queue with the default delivery limit (5) and dead-letter bound
    /// ([`DEFAULT_DEAD_LETTER_MAX_LENGTH`]).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            max_deliveries: 5,
            dead_letter_max_length: DEFAULT_DEAD_LETTER_MAX_LENGTH,
        }
    }

    /// The same queue with another dead-letter bound (at least 1).
    pub fn with_dead_letter_max_length(mut self, max_length: u32) -> Self {
        self.dead_letter_max_length = max_length.max(1);
        self
    }

    /// The same queue with another delivery limit (at least 1).
    pub fn with_max_deliveries(mut self, max_deliveries: u32) -> Self {
        self.max_deliveries = max_deliveries.max(1);
        self
    }

    /// The name of the queue where this queue's dead letters land.
    pub fn dead_letter_queue(&self) -> String {
        dead_letter_queue_name(&self.name)
    }
}

/// The name of the dead-letter queue of `queue`.
pub fn dead_letter_queue_name(queue: &str) -> String {
    format!("{queue}.dead")
}

/// What can go wrong with the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached or the connection broke; retrying later may succeed.
    #[error("the message broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused a publish (negative confirm) or the queue does not exist.
    #[error("the message broker refused the operation: {0}")]
    Refused(String),
    /// The delivery's channel is gone: it will be (or was) redelivered, so its ack is moot.
    #[error("the delivery's channel was closed before it was settled")]
    ChannelClosed,
    /// The consumer was stopped.
    #[error("the consumer is closed")]
    Closed,
}

/// A work queue backend. Cheap to clone behind an `Arc`.
#[async_trait]
pub trait WorkQueue: Send + Sync + fmt::Debug {
    /// Declares the queue, its dead-letter queue and their binding; idempotent.
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError>;

    /// Declares every queue of `specs` (a service's topology), in order; idempotent.
    async fn declare_all(&self, specs: &[QueueSpec]) -> Result<(), QueueError> {
        for spec in specs {
            self.declare(spec).await?;
        }
        Ok(())
    }

    /// Publishes persistent messages to `queue` and returns once the broker has confirmed every
    /// one of them (publisher confirms). On error, any subset may have been stored: callers
    /// republish, and consumers dedupe on [`Message::id`].
    async fn publish(&self, queue: &str, messages: Vec<Message>) -> Result<(), QueueError>;

    /// Starts a consumer on `queue` receiving at most `prefetch` unacknowledged deliveries at
    /// a time. Deliveries that are never settled are redelivered when the consumer is dropped.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;

    /// Whether the broker answers now (for readiness probes).
    async fn ready(&self) -> bool;

    /// The messaging system, as traces name it (`messaging.system`): `rabbitmq`, or the
    /// in-process queues' own names.
    fn system(&self) -> &'static str {
        "unknown"
    }

    /// The number of ready messages in `queue` (those no consumer holds), or `None` when the
    /// queue does not exist or the adapter cannot count (the default). Feeds the dead-letter
    /// depth gauge ([`DeadLetterGauge`]) and the queue depth gauge ([`QueueDepthGauge`]).
    async fn message_count(&self, queue: &str) -> Result<Option<u64>, QueueError> {
        let _ = queue;
        Ok(None)
    }
}

/// A competing consumer on one queue.
#[async_trait]
pub trait Consumer: Send + fmt::Debug {
    /// The next delivery. Waits for one; survives broker reconnects (re-subscribing); returns
    /// `Err(QueueError::Closed)` only once the consumer is closed.
    async fn next(&mut self) -> Result<Delivery, QueueError>;

    /// Up to `max` deliveries: waits for the first, then takes whatever else arrives within
    /// `linger`. Lets a worker apply a batch in one transaction and ack it after the commit.
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Delivery>, QueueError> {
        let mut batch = vec![self.next().await?];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Ok(delivery)) => batch.push(delivery),
                Ok(Err(error)) if batch.is_empty() => return Err(error),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        Ok(batch)
    }
}

/// How a delivery is settled; implemented by each adapter.
#[async_trait]
pub trait Settle: Send + Sync + fmt::Debug {
    /// Done: remove the message.
    async fn ack(&self) -> Result<(), QueueError>;
    /// Failed for now: put it back for another delivery (counts towards the delivery limit).
    async fn retry(&self) -> Result<(), QueueError>;
    /// Never going to work (undecodable, say): straight to the dead-letter queue.
    async fn dead_letter(&self) -> Result<(), QueueError>;
    /// Acknowledges this delivery and every earlier one of its consumer not yet settled, with
    /// one acknowledgement, where the transport has one (AMQP's `multiple`); `None` where it
    /// has not (the caller acknowledges each). See [`ack_all`].
    async fn ack_with_earlier(&self) -> Option<Result<(), QueueError>> {
        None
    }
}

/// Acknowledges a batch of `deliveries` of one consumer, in the order received, after their
/// effects committed. Where the transport can, with one acknowledgement for the whole batch:
/// on RabbitMQ each acknowledgement is a command the quorum queue writes to its log, and a
/// batch of 200 reservations cost 200 of them. That covers every earlier delivery of the
/// consumer too, which is right for a consumer that settles each batch (acknowledged, returned
/// or dead-lettered) before it takes the next, as the consumer runner does. Each delivery's
/// result, in order; one that could not be settled (its channel closed) comes again, which the
/// consumers' inboxes make harmless.
pub async fn ack_all(deliveries: Vec<Delivery>) -> Vec<Result<(), QueueError>> {
    let Some(last) = deliveries.last() else {
        return Vec::new();
    };
    match last.settle.ack_with_earlier().await {
        Some(Ok(())) => deliveries.iter().map(|_| Ok(())).collect(),
        Some(Err(_)) => deliveries.iter().map(|_| Err(QueueError::ChannelClosed)).collect(),
        None => {
            let mut results = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                results.push(delivery.ack().await);
            }
            results
        }
    }
}

/// One delivery of a message to a consumer.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// How many times this message has been delivered, this time included (1 on the first).
    pub delivery_count: u32,
    settle: Box<dyn Settle>,
}

impl Delivery {
    /// Builds a delivery; adapters call this.
    pub fn new(message: Message, delivery_count: u32, settle: Box<dyn Settle>) -> Self {
        Self {
            message,
            delivery_count,
            settle,
        }
    }

    /// Acknowledges the delivery: the message is done. Call only after its effects committed.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Returns the message to the queue for another try.
    pub async fn retry(self) -> Result<(), QueueError> {
        self.settle.retry().await
    }

    /// Sends the message to the dead-letter queue.
    pub async fn dead_letter(self) -> Result<(), QueueError> {
        self.settle.dead_letter().await
    }
}

/// Opens the work queue a URL names: `amqp://…`/`amqps://…` (RabbitMQ), `memory://`, or
/// `sqlite://<path>` (in-process, kept in that file).
pub async fn from_url(url: &str) -> Result<Arc<dyn WorkQueue>, QueueError> {
    if url.starts_with("memory:") {
        Ok(Arc::new(MemoryQueue::new()))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteQueue::open_url(url).await?))
    } else if url.starts_with("amqp://") || url.starts_with("amqps://") {
        Ok(Arc::new(AmqpQueue::connect(url).await?))
    } else {
        Err(QueueError::Refused(format!(
            "unsupported work queue URL scheme in {url:?}"
        )))
    }
}
