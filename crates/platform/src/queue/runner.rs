//! The consumer runner: the one loop every queue consumer in shop runs. A service supplies a
//! [`Handler`] (how to decode a message, how to apply a batch in one transaction); the runner
//! does the rest, the same way everywhere:
//!
//! - **Poison goes to the dead-letter queue at once.** A message the handler cannot decode can
//!   never apply: it is dead-lettered with a log line and a count
//!   (`messaging.process.dead_lettered`).
//! - **Transient is not poison.** When applying fails because a dependency is down (database,
//!   broker, cache, another service: [`crate::fault::is_transient`]), the runner keeps the
//!   batch in hand and applies it again after a pause (capped exponential backoff with
//!   jitter), for as long as the outage lasts. Holding the deliveries burns no delivery
//!   attempts (the broker's delivery limit counts returns), and with a bounded prefetch the
//!   consumer pulls nothing more while it waits: it stops pulling until its dependency is back.
//! - **Other failures are counted.** A batch that fails otherwise is split and applied message
//!   by message, so one bad message cannot fail its batch-mates; a message that still fails is
//!   returned to the queue after a pause, and the queue's delivery limit dead-letters it if it
//!   keeps failing.
//! - **Bundles are opened.** A delivery may carry several messages (a bundle, see
//!   [`super::bundle`]); each is decoded, applied and counted as if it had come alone. One that
//!   can never be applied, or fails when applied alone, is published again to the queue on its
//!   own (where the rules above retry and dead-letter it), and the bundle is acknowledged once
//!   all its other messages are applied; if that publish fails, the bundle goes back whole.
//!   A bundle that cannot be read is dead-lettered.
//! - **Ack after commit.** Deliveries are acknowledged only after `apply` returned `Ok`, which
//!   handlers return only after their transaction committed.
//! - **Shutdown.** Cancelling the token stops the wait for deliveries at once; a batch being
//!   applied is finished and settled; a batch waiting out an outage is returned to the queue.
//! - **Measured.** Every settled delivery is recorded in `messaging.process.duration` (from its
//!   receipt to its settlement, by `outcome`: `ok`, `retried`, `dead_lettered`); its count is
//!   the consume rate. The dead-letter and retry counters start at 0 for every label set known
//!   at start, so that an alert on their increase fires on the first event.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram},
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Message, QueueError, WorkQueue, bundle};
use crate::{backoff::Backoff, fault, telemetry::messaging};

/// Why a message can never be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Poison {
    /// A short, stable label for metrics (`undecodable`, `unknown_kind`, `malformed_id`, …).
    pub reason: &'static str,
    /// What is wrong, for the log.
    pub detail: String,
}

impl Poison {
    /// A poison message with its metric label and log detail.
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// One message to apply, decoded, with the delivery it came in: alone, or in a bundle.
struct Unit<T> {
    message: Message,
    delivery_count: u32,
    /// Its delivery's index in [`Batch::deliveries`].
    delivery: usize,
    item: T,
    span: tracing::Span,
}

/// A delivery held until its messages are settled.
struct Held {
    delivery: Delivery,
    /// Whether it is a bundle (its messages that fail are published again on their own).
    bundled: bool,
    fate: Fate,
}

/// How a held delivery is settled once its messages are.
enum Fate {
    /// Acknowledged: its messages are applied, or published again on their own.
    Ack,
    /// Returned to the queue whole: publishing its failed messages on their own failed.
    Retry,
}

/// The deliveries of one batch, opened into the messages they carry.
struct Batch<T> {
    deliveries: Vec<Held>,
    units: Vec<Unit<T>>,
    /// Messages of bundles to publish again on their own, with their delivery's index.
    split: Vec<(usize, Message)>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Self {
            deliveries: Vec::new(),
            units: Vec::new(),
            split: Vec::new(),
        }
    }
}

/// What a consumer does with its messages.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// A decoded message (and whatever the handler keeps with it, such as its span).
    type Item: Send + Sync;

    /// Decodes and checks one message; `Err` sends it to the dead-letter queue. It runs inside
    /// the delivery's span: record what the message is about on `tracing::Span::current()`.
    fn decode(&self, message: &Message) -> Result<Self::Item, Poison>;

    /// Applies `items` (with the message ids of their deliveries) in one transaction, and
    /// returns only after it committed. An error means nothing at all was applied.
    async fn apply(&self, items: &[Received<'_, Self::Item>]) -> anyhow::Result<()>;

    /// Every [`Poison::reason`] `decode` may give: their dead-letter counts start at 0.
    fn poison_reasons(&self) -> &'static [&'static str] {
        &[]
    }
}

/// One decoded delivery, as [`Handler::apply`] sees it.
#[derive(Debug)]
pub struct Received<'a, T> {
    /// The message's id (consumers record it in their inbox).
    pub message_id: &'a str,
    /// How many times the message has been delivered, this time included.
    pub delivery_count: u32,
    /// The decoded message.
    pub item: &'a T,
    /// The delivery's CONSUMER span (`process <queue>`, a child of the message's creation
    /// context): apply the message inside it, so what it writes to an outbox joins its trace.
    pub span: &'a tracing::Span,
}

/// How a runner consumes.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Concurrent consumers on the queue.
    pub consumers: usize,
    /// Unsettled deliveries each consumer holds at most.
    pub prefetch: u16,
    /// Messages applied per transaction (1: one at a time).
    pub batch_size: usize,
    /// How long to wait for more messages to fill a batch.
    pub linger: Duration,
    /// The first pause after a failure; it doubles up to `max_pause`.
    pub first_pause: Duration,
    /// The longest pause after repeated failures.
    pub max_pause: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            consumers: 1,
            prefetch: 16,
            batch_size: 1,
            linger: Duration::ZERO,
            first_pause: Duration::from_millis(100),
            max_pause: Duration::from_secs(5),
        }
    }
}

/// Runs a [`Handler`] on one queue.
pub struct ConsumerRunner<H: Handler> {
    queue: Arc<dyn WorkQueue>,
    name: String,
    handler: Arc<H>,
    options: RunnerOptions,
    metrics: RunnerMetrics,
}

impl<H: Handler> fmt::Debug for ConsumerRunner<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerRunner")
            .field("queue", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> ConsumerRunner<H> {
    /// A runner applying the messages of `queue_name` with `handler`.
    pub fn new(
        queue: Arc<dyn WorkQueue>,
        queue_name: impl Into<String>,
        handler: Arc<H>,
        options: RunnerOptions,
    ) -> Self {
        Self {
            queue,
            name: queue_name.into(),
            handler,
            options,
            metrics: RunnerMetrics::new(),
        }
    }

    /// Consumes with `options.consumers` consumers until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        self.metrics.start(&self.name, self.handler.poison_reasons());
        let runner = Arc::new(self);
        let mut consumers = JoinSet::new();
        for _ in 0..runner.options.consumers.max(1) {
            consumers.spawn(Arc::clone(&runner).consume(shutdown.clone()));
        }
        while let Some(joined) = consumers.join_next().await {
            if let Err(error) = joined {
                tracing::error!(queue = %runner.name, %error, "a consumer task failed");
            }
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.options.first_pause, self.options.max_pause)
    }

    async fn consume(self: Arc<Self>, shutdown: CancellationToken) {
        let queue = self.name.as_str();
        let mut backoff = self.backoff();
        let mut consumer = loop {
            match self.queue.consume(queue, self.options.prefetch).await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(%queue, %error, "cannot consume yet");
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                }
            }
        };
        backoff.reset();
        tracing::debug!(%queue, "consumer started");
        loop {
            // Only the wait for deliveries is cut short by shutdown; a batch in hand is finished.
            let batch = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                batch = consumer.next_batch(self.options.batch_size.max(1), self.options.linger) => batch,
            };
            match batch {
                Ok(deliveries) => {
                    backoff.reset();
                    self.handle(deliveries, &shutdown).await;
                }
                Err(QueueError::Closed) => break,
                Err(error) => {
                    tracing::warn!(%queue, %error, "receiving from the queue failed");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }
        // Dropping the consumer returns any delivery it still held to the queue.
        drop(consumer);
        tracing::debug!(%queue, "consumer stopped");
    }

    /// Opens, decodes, applies and settles one batch of deliveries.
    async fn handle(&self, deliveries: Vec<Delivery>, shutdown: &CancellationToken) {
        let queue = self.name.as_str();
        let received = Instant::now();
        let mut batch = Batch::default();
        for delivery in deliveries {
            self.open(delivery, &mut batch, received).await;
        }
        // Applied in groups of at most `batch_size` messages (bundles may hold more).
        let mut failed: Vec<Option<anyhow::Error>> = (0..batch.units.len()).map(|_| None).collect();
        let size = self.options.batch_size.max(1);
        // Each group with its own slots of `failed`, so a failure lands on its message.
        for (group, failures) in batch.units.chunks(size).zip(failed.chunks_mut(size)) {
            match self.apply_through_outages(group, shutdown).await {
                Applied::Committed => {}
                // Dropped unsettled: the broker returns them to the queue for after the restart.
                Applied::ShuttingDown => return,
                Applied::Failed(error) if group.len() > 1 => {
                    tracing::warn!(%queue, size = group.len(), error = format!("{error:#}"), "a batch failed; applying its messages one by one");
                    for (offset, one) in group.iter().enumerate() {
                        match self.apply_through_outages(std::slice::from_ref(one), shutdown).await {
                            Applied::Committed => {}
                            Applied::ShuttingDown => return,
                            Applied::Failed(error) => failures[offset] = Some(error),
                        }
                    }
                }
                Applied::Failed(error) => failures[0] = Some(error),
            }
        }
        let mut give_back = Vec::new();
        for (unit, failure) in std::mem::take(&mut batch.units).into_iter().zip(failed) {
            let Some(error) = failure else {
                self.metrics.processed(queue, Outcome::Ok, received);
                continue;
            };
            if batch.deliveries[unit.delivery].bundled {
                // Published again on its own below, to be retried (and in the end dead-lettered)
                // like any message, without holding back the rest of its bundle.
                messaging::record_failure(&unit.span, &format_args!("{error:#}"));
                tracing::warn!(%queue, message_id = %unit.message.id, delivery_count = unit.delivery_count, error = format!("{error:#}"), "a bundled message failed; it goes back to the queue on its own");
                self.metrics.retried(queue, "failed");
                self.metrics.processed(queue, Outcome::Retried, received);
                batch.split.push((unit.delivery, unit.message));
            } else {
                // Back in its delivery, for the log line and the span of its return.
                batch.deliveries[unit.delivery].delivery.message = unit.message;
                give_back.push((unit.delivery, unit.span, error));
            }
        }
        self.publish_split(&mut batch).await;
        self.settle(batch.deliveries, give_back, shutdown, received).await;
    }

    /// Opens one delivery into `batch`: a message alone becomes one unit, a bundle one unit per
    /// message in it. What can never be applied is settled at once: a message alone, or a
    /// bundle that cannot be read, is dead-lettered; a message of a bundle is kept to be
    /// published again on its own (its own delivery then dead-letters it).
    async fn open(&self, mut delivery: Delivery, batch: &mut Batch<H::Item>, received: Instant) {
        let queue = self.name.as_str();
        let index = batch.deliveries.len();
        let delivery_count = delivery.delivery_count;
        let (messages, bundled) = if bundle::is_bundle(&delivery.message) {
            match bundle::open(&delivery.message) {
                Ok(messages) => (messages, true),
                Err(poison) => return self.dead_letter(delivery, None, &poison, received).await,
            }
        } else {
            (vec![std::mem::take(&mut delivery.message)], false)
        };
        for message in messages {
            let span = messaging::process_span(self.queue.system(), queue, &message, delivery_count);
            match span.in_scope(|| self.handler.decode(&message)) {
                Ok(item) => batch.units.push(Unit {
                    message,
                    delivery_count,
                    delivery: index,
                    item,
                    span,
                }),
                Err(poison) if bundled => {
                    messaging::record_failure(&span, &format_args!("poison ({}): {}", poison.reason, poison.detail));
                    tracing::warn!(%queue, message_id = %message.id, kind = %message.kind, reason = poison.reason, error = %poison.detail, "a bundled message can never be applied; it goes back to the queue on its own, to be dead-lettered");
                    self.metrics.processed(queue, Outcome::Retried, received);
                    batch.split.push((index, message));
                }
                Err(poison) => {
                    messaging::record_failure(&span, &format_args!("poison ({}): {}", poison.reason, poison.detail));
                    return self.dead_letter(delivery, Some(message), &poison, received).await;
                }
            }
        }
        batch.deliveries.push(Held {
            delivery,
            bundled,
            fate: Fate::Ack,
        });
    }

    /// Dead-letters a delivery that can never be applied (`message` is what it carried, when it
    /// was taken out to be decoded).
    async fn dead_letter(&self, mut delivery: Delivery, message: Option<Message>, poison: &Poison, received: Instant) {
        let queue = self.name.as_str();
        if let Some(message) = message {
            delivery.message = message;
        }
        tracing::warn!(
            %queue,
            message_id = %delivery.message.id,
            kind = %delivery.message.kind,
            delivery_count = delivery.delivery_count,
            reason = poison.reason,
            error = %poison.detail,
            "dead-lettering a message that can never be applied"
        );
        self.metrics.dead_lettered(queue, poison.reason);
        settle(delivery.dead_letter().await, queue);
        self.metrics.processed(queue, Outcome::DeadLettered, received);
    }

    /// Publishes the bundled messages that were not applied again on their own. If that fails,
    /// their bundles go back to the queue whole (what was applied of them is skipped next time,
    /// by message id).
    async fn publish_split(&self, batch: &mut Batch<H::Item>) {
        if batch.split.is_empty() {
            return;
        }
        let queue = self.name.as_str();
        let (from, messages): (Vec<usize>, Vec<Message>) = std::mem::take(&mut batch.split).into_iter().unzip();
        if let Err(error) = self.queue.publish(queue, messages).await {
            tracing::warn!(%queue, %error, "could not publish the messages of a bundle again on their own; the bundle goes back to the queue");
            for index in from {
                batch.deliveries[index].fate = Fate::Retry;
            }
        }
    }

    /// Settles the deliveries of a batch: those returned whole first, then the acknowledgements
    /// (one for all, unless messages are given back after a pause), then those given back.
    async fn settle(
        &self,
        deliveries: Vec<Held>,
        give_back: Vec<(usize, tracing::Span, anyhow::Error)>,
        shutdown: &CancellationToken,
        received: Instant,
    ) {
        let queue = self.name.as_str();
        let mut deliveries: Vec<Option<Held>> = deliveries.into_iter().map(Some).collect();
        let mut given_back = Vec::with_capacity(give_back.len());
        for (index, span, error) in give_back {
            if let Some(held) = deliveries[index].take() {
                given_back.push((held.delivery, span, error));
            }
        }
        let mut acks = Vec::with_capacity(deliveries.len());
        for held in deliveries.into_iter().flatten() {
            match held.fate {
                Fate::Ack => acks.push(held.delivery),
                Fate::Retry => settle(held.delivery.retry().await, queue),
            }
        }
        if given_back.is_empty() {
            // The acknowledged deliveries are every one of the consumer not yet settled (the
            // others were settled above, earlier batches before this one was taken).
            for result in super::ack_all(acks).await {
                settle(result, queue);
            }
        } else {
            for delivery in acks {
                settle(delivery.ack().await, queue);
            }
        }
        for (delivery, span, error) in given_back {
            self.give_back(delivery, &span, &error, shutdown, received).await;
        }
    }

    /// Applies `batch`, waiting out transient failures for as long as they last.
    async fn apply_through_outages(&self, batch: &[Unit<H::Item>], shutdown: &CancellationToken) -> Applied {
        let queue = self.name.as_str();
        let received: Vec<Received<'_, H::Item>> = batch
            .iter()
            .map(|unit| Received {
                message_id: &unit.message.id,
                delivery_count: unit.delivery_count,
                item: &unit.item,
                span: &unit.span,
            })
            .collect();
        let mut backoff = self.backoff();
        loop {
            let error = match self.handler.apply(&received).await {
                Ok(()) => {
                    if backoff.failures() > 0 {
                        tracing::info!(%queue, retries = backoff.failures(), "dependency back; batch applied");
                    }
                    return Applied::Committed;
                }
                Err(error) => error,
            };
            if !fault::is_transient(&error) {
                return Applied::Failed(error);
            }
            self.metrics.retried(queue, "transient");
            let pause = backoff.next_pause();
            // The first failure and then every tenth, so a long outage does not flood the log.
            if backoff.failures() % 10 == 1 {
                tracing::warn!(%queue, size = batch.len(), retries = backoff.failures() - 1, ?pause, error = format!("{error:#}"), "a dependency is down; holding the batch and retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return Applied::ShuttingDown,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Returns a message that failed for a reason other than an outage to the queue, after a
    /// pause so that it does not spin; this counts towards the queue's delivery limit.
    async fn give_back(
        &self,
        delivery: Delivery,
        span: &tracing::Span,
        error: &anyhow::Error,
        shutdown: &CancellationToken,
        received: Instant,
    ) {
        let queue = self.name.as_str();
        messaging::record_failure(span, &format_args!("{error:#}"));
        tracing::warn!(%queue, message_id = %delivery.message.id, delivery_count = delivery.delivery_count, error = format!("{error:#}"), "a message failed; it goes back to the queue");
        self.metrics.retried(queue, "failed");
        let mut backoff = self.backoff();
        for _ in 0..delivery.delivery_count.min(8) {
            backoff.next_pause();
        }
        // Measured before the pause: the pause is the runner's, not the handling's. (Cut short by
        // shutdown, the delivery goes back unsettled: retried all the same.)
        self.metrics.processed(queue, Outcome::Retried, received);
        if backoff.wait(shutdown).await {
            settle(delivery.retry().await, queue);
        }
    }
}

/// What applying a batch came to.
enum Applied {
    Committed,
    ShuttingDown,
    Failed(anyhow::Error),
}

/// Settling fails only when the delivery's channel is gone; the broker then redelivers the
/// message, and the consumer's inbox makes the redelivery a no-op.
fn settle(result: Result<(), QueueError>, queue: &str) {
    if let Err(error) = result {
        tracing::debug!(%queue, %error, "could not settle a delivery; it will come again");
    }
}

/// How the handling of one delivery ended (`outcome` of `messaging.process.duration`).
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// Applied and acknowledged.
    Ok,
    /// Returned to the queue for another delivery.
    Retried,
    /// Sent to the dead-letter queue as poison.
    DeadLettered,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// The runner's counters, on the global OpenTelemetry meter `shop.messaging`, and its duration
/// histogram on [`crate::telemetry::metrics::meter`] (no-ops until the process configures a
/// meter provider).
#[derive(Clone, Debug)]
struct RunnerMetrics {
    dead_lettered: Counter<u64>,
    retried: Counter<u64>,
    duration: Histogram<f64>,
}

impl RunnerMetrics {
    fn new() -> Self {
        let meter = opentelemetry::global::meter("shop.messaging");
        Self {
            dead_lettered: meter
                .u64_counter("messaging.process.dead_lettered")
                .with_description("Messages sent to the dead-letter queue at once because they can never apply, by reason")
                .build(),
            retried: meter
                .u64_counter("messaging.process.retries")
                .with_description("Applications retried: `transient` (a dependency was down; the message was held) or `failed` (returned to the queue)")
                .build(),
            duration: crate::telemetry::metrics::duration_histogram(
                "messaging.process.duration",
                "Time from receiving a delivery to settling it, by outcome (ok, retried, dead_lettered).",
            ),
        }
    }

    /// Starts the counters of `queue` at 0 for every retry kind and every poison reason.
    fn start(&self, queue: &str, poison_reasons: &[&'static str]) {
        for reason in poison_reasons {
            self.dead_lettered.add(0, &Self::dead_letter_labels(queue, reason));
        }
        for kind in ["transient", "failed"] {
            self.retried.add(0, &Self::retry_labels(queue, kind));
        }
    }

    fn processed(&self, queue: &str, outcome: Outcome, received: Instant) {
        self.duration.record(
            received.elapsed().as_secs_f64(),
            &[
                KeyValue::new("messaging.destination.name", queue.to_owned()),
                KeyValue::new("outcome", outcome.label()),
            ],
        );
    }

    fn dead_letter_labels(queue: &str, reason: &'static str) -> [KeyValue; 2] {
        [
            KeyValue::new("messaging.destination.name", queue.to_owned()),
            KeyValue::new("reason", reason),
        ]
    }

    fn retry_labels(queue: &str, kind: &'static str) -> [KeyValue; 2] {
        [
            KeyValue::new("messaging.destination.name", queue.to_owned()),
            KeyValue::new("kind", kind),
        ]
    }

    fn dead_lettered(&self, queue: &str, reason: &'static str) {
        self.dead_lettered.add(1, &Self::dead_letter_labels(queue, reason));
    }

    fn retried(&self, queue: &str, kind: &'static str) {
        self.retried.add(1, &Self::retry_labels(queue, kind));
    }
}
