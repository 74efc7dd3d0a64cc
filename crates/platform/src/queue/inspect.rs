//! Looking into the dead-letter queues of a RabbitMQ deployment and moving their messages back
//! to work: what an operator needs after an incident (the `shop-admin` tool). Apart from the
//! [`super::WorkQueue`] adapter on purpose: services never browse or re-drive, and these
//! operations have no in-process counterpart.
//!
//! - [`DeadLetters::depth`] counts a queue's ready messages with a passive `queue.declare`,
//!   which touches nothing (messages a consumer holds unacknowledged are not counted).
//! - [`DeadLetters::peek`] takes messages with `basic.get` without acknowledging them, then
//!   returns every one (`basic.nack` with requeue). Reading is not free: a returned message may
//!   change its place in the queue, and a quorum queue counts the return in the message's
//!   `x-delivery-count` ([`DeadLetter::returns`]).
//! - [`DeadLetters::redrive`] takes a dead letter with `basic.get`, publishes it to its work
//!   queue with publisher confirms (through [`AmqpQueue`], keeping its id, kind, payload and
//!   headers), and only then acknowledges it on the dead-letter queue. A crash in between leaves
//!   the message in both queues, a duplicate that consumers skip by message id, never in none.

use std::{collections::BTreeMap, fmt, time::Duration};

use chrono::{DateTime, Utc};
use lapin::{
    Channel, Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, ShortString},
};

use super::{
    AmqpQueue, Message, QueueError, WorkQueue as _,
    amqp::{classify, integer, message, short, text},
    dead_letter_queue_name,
};
use crate::config::redact_url;

/// One broker operation (connecting, a `basic.get`, a declare, an acknowledgement): a broker
/// that stops answering fails the command instead of hanging the operator's terminal.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Dead letters moved per publish: each batch is confirmed as a whole, then acknowledged.
const REDRIVE_BATCH: usize = 100;
/// The header a quorum queue adds to a message it has had returned: how many times.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// The header RabbitMQ adds to a dead-lettered message: one entry per (queue, reason).
const DEATH_HEADER: &str = "x-death";
/// Headers RabbitMQ owns and writes when it dead-letters a message. They are not carried back
/// to the work queue, so that a message that dies again reports that death, not this one.
const DEATH_HEADER_PREFIXES: [&str; 2] = ["x-first-death-", "x-last-death-"];

/// The dead-letter queues of a RabbitMQ broker, for inspection and re-driving.
pub struct DeadLetters {
    redacted_url: String,
    /// For `basic.get`, acknowledgements and declares.
    connection: Connection,
    /// Re-driven messages are published the way services publish: confirmed, mandatory.
    publisher: AmqpQueue,
}

impl fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetters")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

/// One message read from a dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message as it was published (its text headers include RabbitMQ's
    /// `x-first-death-queue` and `x-first-death-reason`).
    pub message: Message,
    /// Why and where it died (`x-death`), the most recent death first.
    pub deaths: Vec<Death>,
    /// How many times the dead-letter queue has had it returned (each [`DeadLetters::peek`]
    /// counts once on a quorum queue).
    pub returns: u64,
}

/// One entry of RabbitMQ's `x-death` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Death {
    /// The queue the message died in.
    pub queue: String,
    /// `rejected` (a consumer sent it here), `delivery_limit` (too many deliveries),
    /// `expired` or `maxlen`.
    pub reason: String,
    /// How many times it died in that queue for that reason.
    pub count: u64,
    /// When it first died there.
    pub time: Option<DateTime<Utc>>,
}

impl DeadLetter {
    /// The W3C trace id of the `traceparent` header: the trace of the request that caused the
    /// message, to look up in the tracing backend.
    pub fn trace_id(&self) -> Option<String> {
        use opentelemetry::{
            propagation::TextMapPropagator as _,
            trace::{TraceContextExt as _, TraceId},
        };
        let carrier: std::collections::HashMap<String, String> = self
            .message
            .headers
            .iter()
            .filter(|(key, _)| matches!(key.as_str(), "traceparent" | "tracestate"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
        let trace_id = context.span().span_context().trace_id();
        (trace_id != TraceId::INVALID).then(|| trace_id.to_string())
    }

    /// The message as it goes back to its work queue: id, kind, payload and headers, without
    /// the broker's dead-letter bookkeeping.
    fn for_redrive(&self) -> Message {
        let mut message = self.message.clone();
        message
            .headers
            .retain(|key, _| !DEATH_HEADER_PREFIXES.iter().any(|prefix| key.starts_with(prefix)));
        message
    }
}

/// Which dead letters [`DeadLetters::redrive`] moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every message in the dead-letter queue when the re-drive starts.
    All,
    /// The messages with this id (normally one).
    Id(String),
}

impl Selection {
    fn matches(&self, message: &Message) -> bool {
        match self {
            Self::All => true,
            Self::Id(id) => message.id == *id,
        }
    }
}

/// A re-drive that stopped part way: what was moved before the error.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after moving {} message(s) back)", moved.len())]
pub struct RedriveError {
    /// Ids of the messages already moved back to the work queue.
    pub moved: Vec<String>,
    /// What went wrong.
    #[source]
    pub error: QueueError,
}

impl DeadLetters {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`).
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        let publisher = AmqpQueue::connect(url).await?;
        let properties = ConnectionProperties::default().with_connection_name("shop-admin".into());
        let connection = bounded("connecting", Connection::connect(url, properties)).await?;
        Ok(Self {
            redacted_url: redact_url(url),
            connection,
            publisher,
        })
    }

    /// The number of ready messages in `queue`, or `None` if there is no such queue.
    pub async fn depth(&self, queue: &str) -> Result<Option<u32>, QueueError> {
        let name = short(queue)?;
        // A channel of its own: a passive declare of a missing queue closes its channel.
        let channel = self.channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = tokio::time::timeout(
            OPERATION_TIMEOUT,
            channel.queue_declare(name, options, FieldTable::default()),
        )
        .await;
        let depth = match declared {
            Ok(Ok(queue)) => Some(queue.message_count()),
            Ok(Err(error)) if is_not_found(&error) => None,
            Ok(Err(error)) => return Err(classify(&error)),
            Err(_elapsed) => return Err(timed_out("counting messages")),
        };
        close(&channel).await;
        Ok(depth)
    }

    /// Up to `limit` messages from the head of `queue`'s dead-letter queue, left in place: each
    /// is taken unacknowledged and returned once all are read (its order in the queue may
    /// change, and a quorum queue counts the return).
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let dead = short(&dead_letter_queue_name(queue))?;
        let channel = self.channel().await?;
        let mut letters = Vec::new();
        let taken = async {
            while letters.len() < limit {
                match get(&channel, &dead).await? {
                    Some((_tag, letter)) => letters.push(letter),
                    None => break,
                }
            }
            return_unacknowledged(&channel).await
        }
        .await;
        // Closing the channel returns whatever is still unacknowledged, error or not.
        close(&channel).await;
        taken?;
        Ok(letters)
    }

    /// Moves the `selection` of `queue`'s dead letters back to `queue`. Looks at most at the
    /// messages present when it starts, so that a message dead-lettered again at once is not
    /// re-driven in a loop. Messages not selected are returned to the dead-letter queue. Returns
    /// the ids moved, in order.
    pub async fn redrive(&self, queue: &str, selection: &Selection) -> Result<Vec<String>, RedriveError> {
        let mut moved = Vec::new();
        match self.redrive_into(queue, selection, &mut moved).await {
            Ok(()) => Ok(moved),
            Err(error) => Err(RedriveError { moved, error }),
        }
    }

    async fn redrive_into(
        &self,
        queue: &str,
        selection: &Selection,
        moved: &mut Vec<String>,
    ) -> Result<(), QueueError> {
        let dead_name = dead_letter_queue_name(queue);
        let dead = short(&dead_name)?;
        let Some(present) = self.depth(&dead_name).await? else {
            return Err(QueueError::Refused(format!("there is no queue {dead_name:?}")));
        };
        let channel = self.channel().await?;
        let outcome = async {
            let mut seen = 0;
            while seen < present {
                let mut batch = Vec::new();
                while batch.len() < REDRIVE_BATCH && seen < present {
                    let Some((tag, letter)) = get(&channel, &dead).await? else {
                        seen = present;
                        break;
                    };
                    seen += 1;
                    if selection.matches(&letter.message) {
                        batch.push((tag, letter));
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let messages = batch.iter().map(|(_, letter)| letter.for_redrive()).collect();
                // Confirmed by the broker before anything is acknowledged on the dead-letter
                // queue: a failure here leaves the whole batch where it was.
                self.publisher.publish(queue, messages).await?;
                for (tag, letter) in batch {
                    bounded("acknowledging", channel.basic_ack(tag, BasicAckOptions::default())).await?;
                    moved.push(letter.message.id);
                }
                tracing::debug!(%queue, moved = moved.len(), "re-drove a batch of dead letters");
            }
            return_unacknowledged(&channel).await
        }
        .await;
        close(&channel).await;
        outcome
    }

    /// Closes the connections.
    pub async fn close(self) {
        self.connection.close(200, "done".into()).await.ok();
    }

    async fn channel(&self) -> Result<Channel, QueueError> {
        bounded("opening a channel", self.connection.create_channel()).await
    }
}

/// One `basic.get` (unacknowledged): the delivery tag and the message, or `None` when the queue
/// is empty.
async fn get(channel: &Channel, queue: &ShortString) -> Result<Option<(u64, DeadLetter)>, QueueError> {
    let got = bounded(
        "getting a message",
        channel.basic_get(queue.clone(), BasicGetOptions { no_ack: false }),
    )
    .await?;
    Ok(got.map(|got| {
        let delivery = got.delivery;
        (delivery.delivery_tag, dead_letter(&delivery.properties, delivery.data))
    }))
}

/// Returns every message this channel holds unacknowledged to its queue.
async fn return_unacknowledged(channel: &Channel) -> Result<(), QueueError> {
    // Delivery tag 0 with `multiple` means every outstanding delivery on the channel.
    let options = BasicNackOptions {
        multiple: true,
        requeue: true,
    };
    bounded("returning messages", channel.basic_nack(0, options)).await
}

async fn close(channel: &Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(OPERATION_TIMEOUT, channel.close(200, "done".into())).await;
    }
}

/// Reads a message and RabbitMQ's dead-letter headers from AMQP properties.
fn dead_letter(properties: &lapin::BasicProperties, payload: Vec<u8>) -> DeadLetter {
    let mut headers = BTreeMap::new();
    let mut deaths = Vec::new();
    let mut returns = 0;
    if let Some(table) = properties.headers() {
        for (key, value) in table {
            match (key.as_str(), value) {
                (DELIVERY_COUNT_HEADER, value) => {
                    returns = integer(value).and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
                }
                (DEATH_HEADER, AMQPValue::FieldArray(entries)) => {
                    deaths = entries.as_slice().iter().filter_map(death).collect();
                }
                (key, value) => {
                    if let Some(text) = text(value) {
                        headers.insert(key.to_owned(), text);
                    }
                }
            }
        }
    }
    DeadLetter {
        message: message(properties, payload, headers),
        deaths,
        returns,
    }
}

fn death(entry: &AMQPValue) -> Option<Death> {
    let AMQPValue::FieldTable(table) = entry else {
        return None;
    };
    let field = |name: &str| table.inner().get(name);
    Some(Death {
        queue: field("queue").and_then(text).unwrap_or_default(),
        reason: field("reason").and_then(text).unwrap_or_default(),
        count: field("count")
            .and_then(integer)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        time: match field("time") {
            Some(AMQPValue::Timestamp(seconds)) => i64::try_from(*seconds)
                .ok()
                .and_then(|seconds| DateTime::from_timestamp(seconds, 0)),
            _ => None,
        },
    })
}

/// Runs one broker operation within [`OPERATION_TIMEOUT`].
async fn bounded<T>(what: &str, operation: impl Future<Output = lapin::Result<T>>) -> Result<T, QueueError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
        Ok(result) => result.map_err(|error| classify(&error)),
        Err(_elapsed) => Err(timed_out(what)),
    }
}

fn timed_out(what: &str) -> QueueError {
    QueueError::Unavailable(format!("{what} took over {OPERATION_TIMEOUT:?}"))
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, LongString};

    use super::*;

    fn long(value: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(value))
    }

    #[test]
    fn reads_the_death_and_keeps_the_text_headers() {
        let mut death = FieldTable::default();
        death.insert("queue".into(), long("stock.results"));
        death.insert("reason".into(), long("delivery_limit"));
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        headers.insert("x-first-death-queue".into(), long("stock.results"));
        headers.insert(
            "traceparent".into(),
            long("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let properties = lapin::BasicProperties::default()
            .with_message_id("m-1".into())
            .with_type("shop.events.v1.StockReserved".into())
            .with_headers(headers);

        let letter = dead_letter(&properties, vec![1, 2]);
        assert_eq!(letter.message.id, "m-1");
        assert_eq!(letter.message.kind, "shop.events.v1.StockReserved");
        assert_eq!(letter.returns, 3);
        assert_eq!(
            letter.deaths,
            vec![Death {
                queue: "stock.results".into(),
                reason: "delivery_limit".into(),
                count: 1,
                time: DateTime::from_timestamp(1_700_000_000, 0),
            }]
        );
        assert_eq!(letter.trace_id().as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(letter.message.headers.contains_key("x-first-death-queue"));

        let again = letter.for_redrive();
        assert_eq!(
            again.headers.keys().collect::<Vec<_>>(),
            vec!["traceparent"],
            "the broker's death headers stay behind"
        );
        assert_eq!(
            (again.id, again.kind, again.payload),
            (letter.message.id, letter.message.kind, vec![1, 2])
        );
    }

    #[test]
    fn no_or_bad_traceparent_has_no_trace_id() {
        let mut letter = dead_letter(&lapin::BasicProperties::default(), Vec::new());
        assert_eq!(letter.trace_id(), None);
        letter
            .message
            .headers
            .insert("traceparent".into(), "not a trace".into());
        assert_eq!(letter.trace_id(), None);
    }
}
