//! The RabbitMQ work queue adapter (`amqp://…`), on lapin: durable quorum queues with a
//! dead-letter exchange and a delivery limit, confirmed mandatory publishes, and consumers
//! with manual acknowledgement that re-subscribe by themselves after the connection breaks.
//!
//! Topology declared for a queue `<name>`:
//! - `shop.dead-letter`, a durable direct exchange shared by every queue;
//! - `<name>.dead`, a durable quorum queue bound to it with routing key `<name>`, holding at
//!   most [`QueueSpec::dead_letter_max_length`] messages (`x-max-length`, `x-overflow:
//!   drop-head`: beyond the bound the oldest dead letter is dropped). RabbitMQ cannot change the
//!   arguments of a queue that exists, and refuses a declaration with other ones
//!   (`PRECONDITION_FAILED`); a dead-letter queue created without the bound (or with another)
//!   is therefore used as it is, with a warning, rather than stopping the service;
//! - `<name>`, a durable quorum queue with `x-dead-letter-exchange: shop.dead-letter`,
//!   `x-dead-letter-routing-key: <name>` and `x-delivery-limit: max_deliveries - 1`. RabbitMQ
//!   counts *returns* (`x-delivery-count`, absent on the first delivery) and dead-letters a
//!   message returned once more than the limit allows, so a limit of `max_deliveries - 1` lets a
//!   message be delivered exactly `max_deliveries` times (proven by `tests/queue_contract.rs`).
//!
//! Publishes go through the default exchange with `mandatory` set, on a channel in confirm
//! mode: a publish to a queue that does not exist comes back as [`QueueError::Refused`] rather
//! than being dropped silently, as with [`super::MemoryQueue`].
//!
//! A broker that forgets its queues (redeployed without its volume, or a queue deleted by hand)
//! is repaired on the spot: when a publish comes back unroutable, or a subscription is refused
//! because the queue does not exist, the adapter declares that queue's topology again (from
//! the specs declared through it) and tries once more. Producers and consumers carry on
//! without a restart; what the broker lost with the queue is what the outbox and the order
//! reconciler exist for.
//!
//! lapin's own automatic recovery is off: the adapter holds one connection behind a lock, and
//! whichever operation finds it broken reconnects it with exponential backoff (100 ms doubling
//! to 5 s), giving up with [`QueueError::Unavailable`] after a few seconds. Consumers keep
//! retrying for as long as they are polled.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt as _;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
        BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::{sync::Mutex, time::Instant};

use crate::{backoff::Backoff, config::redact_url};

use super::{Consumer, Delivery, Message, QueueError, QueueSpec, Settle, WorkQueue};

/// The exchange dead letters of every queue go through, routed by the source queue's name.
pub(super) const DEAD_LETTER_EXCHANGE: &str = "shop.dead-letter";
/// The header quorum queues add to a redelivered message: how many times it was returned.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// Persistent messages survive a broker restart.
const PERSISTENT: u8 = 2;

/// The first pause between reconnection attempts; it doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one operation keeps trying to reconnect before it reports the broker unavailable:
/// long enough to ride out a broker restart or a network blip, short enough that callers (the
/// outbox relay, a gRPC handler) get an answer.
const RECONNECT_BUDGET: Duration = Duration::from_secs(3);
/// One connection or channel attempt (TCP connect, AMQP handshake, channel open); a
/// black-holed address or a half-open connection must not hang a caller.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a publish (sending and confirms) may take before the connection is deemed broken.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long declaring a queue's topology may take (quorum queues take a moment to start).
const DECLARE_TIMEOUT: Duration = Duration::from_secs(10);

/// The RabbitMQ work queue. Cheap to share behind an `Arc`; consumers share its connection,
/// each on a channel of its own.
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

impl fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("url", &self.shared.redacted_url)
            .finish()
    }
}

impl AmqpQueue {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`). Fails with
    /// [`QueueError::Unavailable`] if the broker cannot be reached within a few seconds; after
    /// that, broken connections are re-established on demand.
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            redacted_url: redact_url(url),
            link: Mutex::new(None),
            declared: std::sync::Mutex::default(),
        });
        shared.connection(RECONNECT_BUDGET).await?;
        Ok(Self { shared })
    }
}

#[async_trait]
impl WorkQueue for AmqpQueue {
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        self.shared.declare(spec).await?;
        self.shared
            .declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn publish(&self, queue: &str, messages: Vec<Message>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let routing_key = short(queue)?;
        let prepared = messages
            .into_iter()
            .map(|message| Ok((properties(&message)?, message.payload)))
            .collect::<Result<Vec<_>, QueueError>>()?;
        match self.shared.publish(queue, &routing_key, &prepared).await {
            Err(Published::Unroutable(error)) if self.shared.redeclare(queue).await => {
                tracing::warn!(url = %self.shared.redacted_url, %queue, %error, "the broker had forgotten the queue; declared it again");
                self.shared
                    .publish(queue, &routing_key, &prepared)
                    .await
                    .map_err(Published::into_error)
            }
            result => result.map_err(Published::into_error),
        }
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let queue = short(queue)?;
        let subscription = subscribe(&self.shared, &queue, prefetch).await?;
        Ok(Box::new(AmqpConsumer {
            shared: self.shared.clone(),
            queue,
            prefetch,
            subscription: Some(subscription),
        }))
    }

    async fn ready(&self) -> bool {
        // A single attempt: a readiness probe wants an answer, not a retry loop.
        self.shared.connection(Duration::ZERO).await.is_ok()
    }

    fn system(&self) -> &'static str {
        "rabbitmq"
    }

    async fn message_count(&self, queue: &str) -> Result<Option<u64>, QueueError> {
        let name = short(queue)?;
        // A single attempt, as for readiness: a gauge reading is taken again soon.
        let connection = self.shared.connection(Duration::ZERO).await?;
        let counted = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
            // A channel of its own: a passive declare of a missing queue closes its channel.
            let channel = connection.create_channel().await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let result = channel.queue_declare(name, passive, FieldTable::default()).await;
            close(&channel).await;
            result
        })
        .await;
        match counted {
            Ok(Ok(declared)) => Ok(Some(u64::from(declared.message_count()))),
            Ok(Err(error)) if is_not_found(&error) => Ok(None),
            Ok(Err(error)) => Err(classify(&error)),
            Err(_elapsed) => Err(QueueError::Unavailable(format!(
                "counting the messages of {queue:?} took over {ATTEMPT_TIMEOUT:?}"
            ))),
        }
    }
}

/// Why a publish failed.
enum Published {
    /// The broker has no such queue (the publish was mandatory).
    Unroutable(QueueError),
    /// Anything else.
    Failed(QueueError),
}

impl Published {
    fn into_error(self) -> QueueError {
        match self {
            Self::Unroutable(error) | Self::Failed(error) => error,
        }
    }
}

/// Publishes `batch` on `channel`, then waits for every confirm: one round trip for the batch,
/// not one per message.
async fn publish_batch(
    channel: &Channel,
    queue: &str,
    routing_key: ShortString,
    batch: &[(BasicProperties, Vec<u8>)],
) -> Result<(), Published> {
    let mut confirms = Vec::with_capacity(batch.len());
    for (properties, payload) in batch {
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirm = channel
            .basic_publish(
                ShortString::default(),
                routing_key.clone(),
                options,
                payload,
                properties.clone(),
            )
            .await
            .map_err(|error| Published::Failed(classify(&error)))?;
        confirms.push(confirm);
    }
    let mut unroutable = None;
    for confirm in confirms {
        match confirm.await.map_err(|error| Published::Failed(classify(&error)))? {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            // Mandatory and unroutable: the broker acknowledges the message but returns it.
            Confirmation::Ack(Some(returned)) => {
                unroutable = Some(QueueError::Refused(format!(
                    "no queue named {queue:?} to route to ({} {})",
                    returned.reply_code, returned.reply_text
                )));
            }
            Confirmation::Nack(_) => {
                return Err(Published::Failed(QueueError::Refused(format!(
                    "the broker did not store a message for {queue:?}"
                ))));
            }
        }
    }
    unroutable.map_or(Ok(()), |error| Err(Published::Unroutable(error)))
}

/// Declares `spec`'s topology on channels of its own (a refused declaration closes its
/// channel, which must not be the publishers').
async fn declare_topology(connection: &Connection, spec: &QueueSpec) -> Result<(), QueueError> {
    let name = short(&spec.name)?;
    let dead = short(&spec.dead_letter_queue())?;
    let channel = connection.create_channel().await.map_err(|error| classify(&error))?;
    let declared = match declare_dead_letter_queue(&channel, dead.clone(), spec.dead_letter_max_length).await {
        Err(error) if is_precondition_failed(&error) => {
            // The queue exists with other arguments: created before dead-letter queues were
            // bounded, or with another bound. RabbitMQ cannot change a queue's arguments, and
            // refusing to start over it would stop the service: use the queue as it is.
            tracing::warn!(
                queue = %dead,
                max_length = spec.dead_letter_max_length,
                %error,
                "the dead-letter queue exists without this length bound; keeping it as it is \
                 (delete it while empty to have it declared with the bound)"
            );
            let channel = connection.create_channel().await.map_err(|error| classify(&error))?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let result = async {
                channel
                    .queue_declare(dead.clone(), passive, FieldTable::default())
                    .await?;
                declare_work_queue(&channel, name, dead, spec.max_deliveries).await
            }
            .await;
            close(&channel).await;
            result
        }
        Err(error) => Err(error),
        Ok(()) => declare_work_queue(&channel, name, dead, spec.max_deliveries).await,
    };
    close(&channel).await;
    declared.map_err(|error| classify(&error))
}

async fn close(channel: &Channel) {
    if channel.status().connected() {
        channel.close(200, "declared".into()).await.ok();
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

/// The shared dead-letter exchange and `dead`, bounded to `max_length` messages, the oldest
/// dropped first.
async fn declare_dead_letter_queue(channel: &Channel, dead: ShortString, max_length: u32) -> lapin::Result<()> {
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(i64::from(max_length)));
    arguments.insert("x-overflow".into(), long_string("drop-head"));
    channel.queue_declare(dead, durable(), arguments).await?;
    Ok(())
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Binds `dead` to the dead-letter exchange and declares the work queue `name`.
async fn declare_work_queue(
    channel: &Channel,
    name: ShortString,
    dead: ShortString,
    max_deliveries: u32,
) -> lapin::Result<()> {
    let durable = durable();
    channel
        .queue_bind(
            dead,
            DEAD_LETTER_EXCHANGE.into(),
            name.clone(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    arguments.insert("x-dead-letter-exchange".into(), long_string(DEAD_LETTER_EXCHANGE));
    arguments.insert("x-dead-letter-routing-key".into(), long_string(name.as_str()));
    // RabbitMQ dead-letters a message once its returns exceed the limit, so the limit is the
    // number of *re*deliveries allowed.
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(max_deliveries.max(1) - 1)),
    );
    channel.queue_declare(name, durable, arguments).await?;
    Ok(())
}

/// The connection shared by the queue handle and its consumers, re-established on demand.
struct Shared {
    /// The URL as given, credentials included: never log it, log `redacted_url`.
    url: String,
    redacted_url: String,
    /// The live connection (if any) and its publish channel. Held while reconnecting, so that
    /// concurrent operations wait for one reconnection rather than each making their own.
    link: Mutex<Option<Link>>,
    /// Every queue declared through this handle, by name: declared again when the broker says
    /// it does not know one (a broker redeployed without its volume forgets its queues).
    declared: std::sync::Mutex<BTreeMap<String, QueueSpec>>,
}

struct Link {
    connection: Arc<Connection>,
    /// The channel publishes go through, in confirm mode; opened on first use.
    publisher: Option<Channel>,
}

impl Shared {
    /// Declares `spec`'s topology.
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        let connection = self.connection(RECONNECT_BUDGET).await?;
        let declared = tokio::time::timeout(DECLARE_TIMEOUT, declare_topology(&connection, spec)).await;
        match declared {
            Ok(result) => result,
            Err(_elapsed) => Err(QueueError::Unavailable(format!(
                "declaring {:?} took over {DECLARE_TIMEOUT:?}",
                spec.name
            ))),
        }
    }

    /// Declares `queue` again if it was declared through this handle (or is the dead-letter
    /// queue of one that was); `true` if it now exists again.
    async fn redeclare(&self, queue: &str) -> bool {
        let spec = {
            let declared = self.declared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            declared
                .get(queue)
                .or_else(|| declared.values().find(|spec| spec.dead_letter_queue() == queue))
                .cloned()
        };
        let Some(spec) = spec else {
            return false;
        };
        match self.declare(&spec).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(url = %self.redacted_url, queue = %spec.name, %error, "declaring a forgotten queue again failed");
                false
            }
        }
    }

    /// One publish of a prepared batch on the publish channel.
    async fn publish(
        &self,
        queue: &str,
        routing_key: &ShortString,
        batch: &[(BasicProperties, Vec<u8>)],
    ) -> Result<(), Published> {
        let channel = self.publisher().await.map_err(Published::Failed)?;
        // Bounded: a broker that blocks publishers (a resource alarm) or stops confirming must
        // not hang the caller, who will republish.
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            publish_batch(&channel, queue, routing_key.clone(), batch),
        )
        .await
        {
            Ok(result) => result,
            Err(_elapsed) => {
                tracing::warn!(url = %self.redacted_url, %queue, "publishing timed out");
                // A broker that stops confirming is as good as gone: start afresh next time.
                self.reset(&channel).await;
                Err(Published::Failed(QueueError::Unavailable(format!(
                    "no publisher confirms within {PUBLISH_TIMEOUT:?}"
                ))))
            }
        }
    }

    /// The live connection, reconnecting (with backoff, within `budget`) if it is broken.
    async fn connection(&self, budget: Duration) -> Result<Arc<Connection>, QueueError> {
        Ok(self.link(budget, false).await?.0)
    }

    /// The publish channel, reopening it (and the connection) if it is broken.
    async fn publisher(&self) -> Result<Channel, QueueError> {
        match self.link(RECONNECT_BUDGET, true).await? {
            (_, Some(channel)) => Ok(channel),
            (_, None) => Err(QueueError::Unavailable("no publish channel".to_owned())),
        }
    }

    /// Drops the connection if it is still the one `channel` belongs to, so that the next
    /// operation starts afresh: used when the broker stopped answering on it.
    async fn reset(&self, channel: &Channel) {
        let mut link = self.link.lock().await;
        if link
            .as_ref()
            .is_some_and(|live| live.publisher.as_ref() == Some(channel))
        {
            tracing::warn!(url = %self.redacted_url, "dropping an unresponsive connection to the message broker");
            *link = None;
        }
    }

    /// The live connection (and the publish channel if `with_publisher`), re-establishing them
    /// until it works, pausing with exponential backoff between failures, for at most `budget`.
    /// A refusal by the broker is final at once. An attempt that hangs (a black-holed address,
    /// a half-open connection) is abandoned after [`ATTEMPT_TIMEOUT`], along with the link.
    async fn link(
        &self,
        budget: Duration,
        with_publisher: bool,
    ) -> Result<(Arc<Connection>, Option<Channel>), QueueError> {
        let mut slot = self.link.lock().await;
        let deadline = Instant::now() + budget;
        let mut backoff = reconnect_backoff();
        loop {
            let error = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&mut slot, with_publisher)).await {
                Ok(Ok(link)) => return Ok(link),
                Ok(Err(error)) => classify(&error),
                Err(_elapsed) => {
                    *slot = None;
                    QueueError::Unavailable(format!("the message broker did not answer within {ATTEMPT_TIMEOUT:?}"))
                }
            };
            if matches!(error, QueueError::Refused(_)) {
                return Err(error);
            }
            let pause = backoff.next_pause();
            if Instant::now() + pause > deadline {
                tracing::warn!(url = %self.redacted_url, %error, "giving up reconnecting to the message broker for now");
                return Err(error);
            }
            tracing::debug!(url = %self.redacted_url, %error, ?pause, "message broker unreachable; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt(
        &self,
        slot: &mut Option<Link>,
        with_publisher: bool,
    ) -> lapin::Result<(Arc<Connection>, Option<Channel>)> {
        if !slot.as_ref().is_some_and(|link| link.connection.status().connected()) {
            if slot.take().is_some() {
                tracing::warn!(url = %self.redacted_url, "the connection to the message broker broke; reconnecting");
            }
            let properties = ConnectionProperties::default().with_connection_name("shop-platform".into());
            let connection = Connection::connect(&self.url, properties).await?;
            tracing::info!(url = %self.redacted_url, "connected to the message broker");
            *slot = Some(Link {
                connection: Arc::new(connection),
                publisher: None,
            });
        }
        let Some(live) = slot.as_mut() else {
            return Err(std::io::Error::from(std::io::ErrorKind::NotConnected).into());
        };
        if !with_publisher {
            return Ok((live.connection.clone(), None));
        }
        if let Some(channel) = live.publisher.as_ref().filter(|channel| channel.status().connected()) {
            return Ok((live.connection.clone(), Some(channel.clone())));
        }
        let channel = live.connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        live.publisher = Some(channel.clone());
        Ok((live.connection.clone(), Some(channel)))
    }
}

/// The reconnection pause policy: 100 ms doubling up to 5 s, with jitter so that replicas
/// cut off together do not reconnect together.
fn reconnect_backoff() -> Backoff {
    Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF)
}

/// One `basic.consume` on a channel of its own.
struct Subscription {
    /// Kept so the channel lives as long as the subscription; dropping the last handle closes
    /// it, which returns its unacknowledged deliveries to the queue.
    _channel: Channel,
    consumer: lapin::Consumer,
    /// Cleared when the subscription is abandoned, so that settling one of its deliveries
    /// reports [`QueueError::ChannelClosed`] at once instead of racing the channel's close.
    alive: Arc<AtomicBool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
    }
}

/// Subscribes to `queue`; if the broker does not know it but this handle declared it, declares
/// it again first.
async fn subscribe(shared: &Shared, queue: &ShortString, prefetch: u16) -> Result<Subscription, QueueError> {
    match subscribe_once(shared, queue, prefetch).await {
        Err(error @ QueueError::Refused(_)) => {
            if shared.redeclare(queue.as_str()).await {
                tracing::warn!(url = %shared.redacted_url, %queue, %error, "the broker had forgotten the queue; declared it again");
                subscribe_once(shared, queue, prefetch).await
            } else {
                Err(error)
            }
        }
        result => result,
    }
}

async fn subscribe_once(shared: &Shared, queue: &ShortString, prefetch: u16) -> Result<Subscription, QueueError> {
    let connection = shared.connection(RECONNECT_BUDGET).await?;
    // Kept out of the timed part, so that a subscription given up can close its channel.
    let mut opened: Option<Channel> = None;
    let subscribed = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
        let channel = connection.create_channel().await?;
        opened = Some(channel.clone());
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                queue.clone(),
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        lapin::Result::Ok((channel, consumer))
    })
    .await;
    let failure = match subscribed {
        Ok(Ok((channel, consumer))) => {
            tracing::debug!(%queue, prefetch, tag = %consumer.tag(), "subscribed");
            return Ok(Subscription {
                _channel: channel,
                consumer,
                alive: Arc::new(AtomicBool::new(true)),
            });
        }
        Ok(Err(error)) => classify(&error),
        Err(_elapsed) => QueueError::Unavailable(format!("subscribing to {queue} took over {ATTEMPT_TIMEOUT:?}")),
    };
    // A subscription given up on may still be made at the broker (its answer on the way): its
    // consumer would take up to `prefetch` deliveries that nobody here reads and hold them
    // until the connection closes. Closing the channel returns them to the queue.
    if let Some(channel) = opened {
        tokio::spawn(async move {
            if let Err(error) = channel.close(200, "subscription given up".into()).await {
                tracing::debug!(%error, "closing the channel of a subscription given up failed");
            }
        });
    }
    Err(failure)
}

/// A consumer of an [`AmqpQueue`]. Dropping it closes its channel.
struct AmqpConsumer {
    shared: Arc<Shared>,
    queue: ShortString,
    prefetch: u16,
    /// `None` after the subscription broke, until `next` re-subscribes.
    subscription: Option<Subscription>,
}

impl fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConsumer")
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("subscribed", &self.subscription.is_some())
            .finish()
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        // Cancel safety (`next_batch` times `next` out): every await below either leaves the
        // subscription untouched or leaves it `None`, which the next call repairs.
        let mut backoff = reconnect_backoff();
        loop {
            let Some(subscription) = self.subscription.as_mut() else {
                match subscribe(&self.shared, &self.queue, self.prefetch).await {
                    Ok(subscription) => {
                        tracing::info!(queue = %self.queue, "re-subscribed after the subscription broke");
                        self.subscription = Some(subscription);
                    }
                    // The queue is gone and this handle never declared it: the caller should
                    // know, not wait forever.
                    Err(error @ QueueError::Refused(_)) => return Err(error),
                    Err(error) => {
                        let pause = backoff.next_pause();
                        tracing::warn!(queue = %self.queue, %error, ?pause, "cannot re-subscribe yet");
                        tokio::time::sleep(pause).await;
                    }
                }
                continue;
            };
            match subscription.consumer.next().await {
                Some(Ok(delivery)) => return Ok(convert(delivery, subscription.alive.clone())),
                Some(Err(error)) => {
                    tracing::warn!(queue = %self.queue, %error, "the subscription broke; re-subscribing");
                    self.subscription = None;
                }
                None => {
                    tracing::warn!(queue = %self.queue, "the broker cancelled the subscription; re-subscribing");
                    self.subscription = None;
                }
            }
        }
    }
}

/// Turns a lapin delivery into ours.
fn convert(delivery: lapin::message::Delivery, alive: Arc<AtomicBool>) -> Delivery {
    let properties = &delivery.properties;
    let mut headers = BTreeMap::new();
    let mut returns = None;
    if let Some(table) = properties.headers() {
        for (key, value) in table {
            if key.as_str() == DELIVERY_COUNT_HEADER {
                returns = integer(value);
            } else if let Some(text) = text(value) {
                headers.insert(key.to_string(), text);
            }
        }
    }
    let delivery_count = match returns {
        Some(returns) => u32::try_from(returns).unwrap_or(u32::MAX).saturating_add(1),
        // Quorum queues always add the header to a redelivery; this covers other queue types.
        None if delivery.redelivered => 2,
        None => 1,
    };
    let message = message(properties, delivery.data, headers);
    Delivery::new(
        message,
        delivery_count,
        Box::new(AmqpSettle {
            acker: delivery.acker,
            alive,
        }),
    )
}

/// A message from its AMQP properties (id, type), payload and string headers.
pub(super) fn message(properties: &BasicProperties, payload: Vec<u8>, headers: BTreeMap<String, String>) -> Message {
    Message {
        id: properties
            .message_id()
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        kind: properties.kind().as_ref().map(ToString::to_string).unwrap_or_default(),
        payload,
        headers,
    }
}

pub(super) fn integer(value: &AMQPValue) -> Option<i64> {
    match *value {
        AMQPValue::ShortShortInt(v) => Some(v.into()),
        AMQPValue::ShortShortUInt(v) => Some(v.into()),
        AMQPValue::ShortInt(v) => Some(v.into()),
        AMQPValue::ShortUInt(v) => Some(v.into()),
        AMQPValue::LongInt(v) => Some(v.into()),
        AMQPValue::LongUInt(v) => Some(v.into()),
        AMQPValue::LongLongInt(v) => Some(v),
        _ => None,
    }
}

pub(super) fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        AMQPValue::ShortString(v) => Some(v.to_string()),
        _ => None,
    }
}

/// Settles a delivery on the channel it came from.
struct AmqpSettle {
    acker: lapin::Acker,
    alive: Arc<AtomicBool>,
}

impl fmt::Debug for AmqpSettle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSettle")
            .field("alive", &self.alive.load(Ordering::Acquire))
            .finish()
    }
}

impl AmqpSettle {
    fn settle(outcome: lapin::Result<bool>) -> Result<(), QueueError> {
        match outcome {
            Ok(true) => Ok(()),
            // Poisoned: the channel closed, the broker requeues the message by itself.
            Ok(false) => Err(QueueError::ChannelClosed),
            Err(error) => {
                tracing::debug!(%error, "settling a delivery failed");
                Err(QueueError::ChannelClosed)
            }
        }
    }

    fn check_alive(&self) -> Result<(), QueueError> {
        if self.alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(QueueError::ChannelClosed)
        }
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(&self) -> Result<(), QueueError> {
        self.check_alive()?;
        Self::settle(self.acker.ack(BasicAckOptions::default()).await)
    }

    async fn retry(&self) -> Result<(), QueueError> {
        self.check_alive()?;
        Self::settle(
            self.acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await,
        )
    }

    async fn dead_letter(&self) -> Result<(), QueueError> {
        self.check_alive()?;
        Self::settle(self.acker.reject(BasicRejectOptions { requeue: false }).await)
    }

    async fn ack_with_earlier(&self) -> Option<Result<(), QueueError>> {
        if let Err(error) = self.check_alive() {
            return Some(Err(error));
        }
        Some(Self::settle(self.acker.ack(BasicAckOptions { multiple: true }).await))
    }
}

/// The AMQP properties of `message`: persistent, with its id, kind and headers.
fn properties(message: &Message) -> Result<BasicProperties, QueueError> {
    let mut headers = FieldTable::default();
    for (key, value) in &message.headers {
        headers.insert(short(key)?, long_string(value));
    }
    Ok(BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(short(&message.id)?)
        .with_type(short(&message.kind)?)
        .with_headers(headers))
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// An AMQP short string (at most 255 bytes); lapin's `From` impls panic on longer ones.
pub(super) fn short(value: &str) -> Result<ShortString, QueueError> {
    ShortString::try_new(value).map_err(|error| QueueError::Refused(format!("{value:.40}…: {error}")))
}

/// Maps a lapin error: the broker refusing something (a channel-level error such as
/// `NOT_FOUND` or `PRECONDITION_FAILED`) is [`QueueError::Refused`]; anything else means the
/// connection is unusable for now.
pub(super) fn classify(error: &lapin::Error) -> QueueError {
    if error.is_amqp_soft_error() {
        QueueError::Refused(error.to_string())
    } else {
        QueueError::Unavailable(error.to_string())
    }
}
