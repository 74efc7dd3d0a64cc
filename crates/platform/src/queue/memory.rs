//! The in-process work queue (`memory://`): the same contract as the RabbitMQ adapter, for
//! tests and single-process development. Nothing survives the process, unless the queue is
//! journaled to a file ([`super::SqliteQueue`]): then every change that must outlive the
//! process is recorded there, and [`MemoryQueue::restore`] rebuilds the queues from it.
//!
//! Semantics, mirroring RabbitMQ quorum queues as [`super::AmqpQueue`] declares them:
//! - publishing to a queue that was never declared is refused ([`QueueError::Refused`]), as a
//!   mandatory publish to RabbitMQ is;
//! - each consumer holds at most `prefetch` unsettled deliveries (`0` means unlimited, as in
//!   AMQP);
//! - a message returned to the queue (retry, or its consumer dropped) goes back to the *front*,
//!   ahead of messages never delivered, as quorum queues serve returns first; it counts as a
//!   delivery, and once a message has had `max_deliveries` deliveries a return sends it to
//!   `<name>.dead` instead;
//! - dead-lettered messages carry `x-first-death-queue`, `x-first-death-reason` (`rejected` or
//!   `delivery_limit`) and `x-first-death-exchange` headers, like RabbitMQ's;
//! - the dead-letter queue itself has no delivery limit and no dead-letter queue: a message
//!   dead-lettered from it is discarded.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    pin::pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    Consumer, Delivery, Message, QueueError, QueueSpec, Settle, WorkQueue,
    amqp::DEAD_LETTER_EXCHANGE,
    journal::{Change, Contents, Journal, Written},
};

/// The in-process work queue. Clones share the same queues.
#[derive(Clone, Default)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

impl MemoryQueue {
    /// An empty set of queues.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queues of a journal's file, every stored message ready (those delivered but never
    /// settled before the process stopped included, as if their consumer had been dropped);
    /// changes from now on are recorded in `journal`.
    pub(super) fn restore(journal: Journal, contents: Contents) -> Self {
        let mut state = State {
            journal: Some(journal),
            ..State::default()
        };
        for queue in contents.queues {
            state.queues.insert(
                queue.name,
                QueueState::new(queue.max_deliveries, queue.dead_letter_queue),
            );
        }
        let mut returned: HashMap<String, Vec<(u64, Stored)>> = HashMap::new();
        for stored in contents.messages {
            state.next_seq = state.next_seq.max(stored.seq);
            if !state.queues.contains_key(&stored.queue) {
                tracing::warn!(queue = %stored.queue, id = %stored.message.id, "a stored message of an undeclared queue is skipped");
                continue;
            }
            returned.entry(stored.queue).or_default().push((
                stored.seq,
                Stored {
                    seq: stored.seq,
                    message: stored.message,
                    deliveries: stored.deliveries,
                },
            ));
        }
        for (queue, messages) in returned {
            // Messages that used up their deliveries are dead-lettered now, as on any return.
            // The moves are recorded without waiting: should they be lost, the next start
            // dead-letters those messages again.
            for written in state.return_to_queue(&queue, messages) {
                drop(written);
            }
        }
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
            }),
        }
    }

    /// Whether the file behind a journaled queue can still be written.
    pub(super) fn is_writable(&self) -> bool {
        self.shared.lock().journal.as_ref().is_none_or(Journal::is_open)
    }
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        let mut queues: Vec<(&str, usize)> = state
            .queues
            .iter()
            .map(|(name, queue)| (name.as_str(), queue.ready.len()))
            .collect();
        queues.sort_unstable();
        f.debug_struct("MemoryQueue").field("ready", &queues).finish()
    }
}

/// State shared by the queue handle, its consumers and their deliveries.
///
/// A std mutex rather than tokio's: it is never held across an `.await`, and consumers must
/// return their deliveries from `Drop`, which cannot await a lock.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queues consistent (every mutation is a
        // single step), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    queues: HashMap<String, QueueState>,
    next_consumer: u64,
    next_tag: u64,
    /// The last sequence number given to a stored message.
    next_seq: u64,
    /// Where changes are recorded, for a queue that outlives the process.
    journal: Option<Journal>,
}

struct QueueState {
    /// Deliveries a message gets before a return dead-letters it; `None`: unlimited.
    max_deliveries: Option<u32>,
    /// Where dead letters go; `None`: they are discarded.
    dead_letter_queue: Option<String>,
    ready: VecDeque<Stored>,
    /// Delivered, not yet settled, by delivery tag.
    unsettled: HashMap<u64, Unsettled>,
    /// Live consumers and how many unsettled deliveries each holds.
    consumers: HashMap<u64, ConsumerSlot>,
    /// Woken whenever a consumer of this queue may be able to take a message.
    notify: Arc<Notify>,
}

impl QueueState {
    fn new(max_deliveries: Option<u32>, dead_letter_queue: Option<String>) -> Self {
        Self {
            max_deliveries,
            dead_letter_queue,
            ready: VecDeque::new(),
            unsettled: HashMap::new(),
            consumers: HashMap::new(),
            notify: Arc::new(Notify::new()),
        }
    }

    fn wake(&self) {
        self.notify.notify_waiters();
    }
}

#[derive(Clone)]
struct Stored {
    /// The message's key in the journal; gives messages an order.
    seq: u64,
    message: Message,
    /// Deliveries so far.
    deliveries: u32,
}

struct Unsettled {
    consumer: u64,
    stored: Stored,
}

struct ConsumerSlot {
    prefetch: u16,
    unsettled: usize,
}

impl ConsumerSlot {
    fn has_room(&self) -> bool {
        self.prefetch == 0 || self.unsettled < usize::from(self.prefetch)
    }
}

/// Why a message was dead-lettered, in RabbitMQ's words.
#[derive(Clone, Copy)]
enum DeathReason {
    Rejected,
    DeliveryLimit,
}

impl DeathReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::DeliveryLimit => "delivery_limit",
        }
    }
}

impl State {
    /// Records `change` in the journal, if the queue has one.
    fn record(&self, change: Change) -> Written {
        match &self.journal {
            Some(journal) => journal.record(change),
            None => Written::done(),
        }
    }

    /// A fresh sequence number.
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Moves `stored`, taken out of `queue`, to that queue's dead-letter queue (if any; else
    /// the message is discarded).
    fn dead_letter(&mut self, queue: &str, mut stored: Stored, reason: DeathReason) -> Written {
        let target = self
            .queues
            .get(queue)
            .and_then(|q| q.dead_letter_queue.clone())
            .filter(|target| self.queues.contains_key(target));
        let Some(target) = target else {
            return self.record(Change::Delete { seq: stored.seq });
        };
        let new_seq = self.next_seq();
        let headers = &mut stored.message.headers;
        // Only the first death is recorded, as RabbitMQ does.
        if !headers.contains_key("x-first-death-queue") {
            headers.insert("x-first-death-queue".to_owned(), queue.to_owned());
            headers.insert("x-first-death-reason".to_owned(), reason.as_str().to_owned());
            headers.insert("x-first-death-exchange".to_owned(), DEAD_LETTER_EXCHANGE.to_owned());
        }
        // The dead-letter queue counts deliveries afresh, as a new queue does in RabbitMQ.
        stored.deliveries = 0;
        let written = self.record(Change::Move {
            seq: stored.seq,
            new_seq,
            queue: target.clone(),
            headers: stored.message.headers.clone(),
        });
        stored.seq = new_seq;
        if let Some(dead) = self.queues.get_mut(&target) {
            dead.ready.push_back(stored);
            dead.wake();
        }
        written
    }

    /// Puts returned messages back at the front of `queue` (in their original order), or
    /// dead-letters those that used up their deliveries (whose moves are returned).
    fn return_to_queue(&mut self, queue: &str, mut returned: Vec<(u64, Stored)>) -> Vec<Written> {
        returned.sort_unstable_by_key(|(tag, _)| *tag);
        let mut exhausted = Vec::new();
        if let Some(state) = self.queues.get_mut(queue) {
            for (_, stored) in returned.into_iter().rev() {
                if state.max_deliveries.is_some_and(|max| stored.deliveries >= max) {
                    exhausted.push(stored);
                } else {
                    state.ready.push_front(stored);
                }
            }
            state.wake();
        }
        exhausted
            .into_iter()
            .rev()
            .map(|stored| self.dead_letter(queue, stored, DeathReason::DeliveryLimit))
            .collect()
    }

    /// Takes a delivery for `consumer` if the queue has one and the consumer has room.
    fn take(&mut self, queue: &str, consumer: u64) -> Result<Option<(u64, Stored)>, QueueError> {
        let tag = self.next_tag;
        let state = self.queues.get_mut(queue).ok_or_else(|| not_found(queue))?;
        let slot = state.consumers.get_mut(&consumer).ok_or(QueueError::Closed)?;
        if !slot.has_room() {
            return Ok(None);
        }
        let Some(mut stored) = state.ready.pop_front() else {
            return Ok(None);
        };
        stored.deliveries = stored.deliveries.saturating_add(1);
        slot.unsettled += 1;
        state.unsettled.insert(
            tag,
            Unsettled {
                consumer,
                stored: stored.clone(),
            },
        );
        self.next_tag += 1;
        // Recorded without waiting: a count lost with the process only means one more
        // delivery before the limit.
        drop(self.record(Change::Delivered {
            seq: stored.seq,
            deliveries: stored.deliveries,
        }));
        Ok(Some((tag, stored)))
    }

    /// Removes an unsettled delivery, freeing room in its consumer's prefetch window.
    fn settle(&mut self, queue: &str, tag: u64) -> Result<Stored, QueueError> {
        let state = self.queues.get_mut(queue).ok_or(QueueError::ChannelClosed)?;
        // Absent: its consumer was dropped and the message went back to the queue.
        let unsettled = state.unsettled.remove(&tag).ok_or(QueueError::ChannelClosed)?;
        if let Some(slot) = state.consumers.get_mut(&unsettled.consumer) {
            slot.unsettled = slot.unsettled.saturating_sub(1);
        }
        state.wake();
        Ok(unsettled.stored)
    }
}

impl State {
    /// Declares `spec`'s queue and its dead-letter queue unless they exist; returns the
    /// records of what it created.
    fn declare(&mut self, spec: &QueueSpec) -> Result<Vec<Written>, QueueError> {
        let dead = spec.dead_letter_queue();
        let max_deliveries = spec.max_deliveries.max(1);
        if let Some(existing) = self.queues.get(&spec.name) {
            // RabbitMQ refuses to redeclare a queue with other arguments; so do we.
            if existing.max_deliveries != Some(max_deliveries) || existing.dead_letter_queue.as_ref() != Some(&dead) {
                return Err(QueueError::Refused(format!(
                    "queue {:?} already exists with another delivery limit",
                    spec.name
                )));
            }
        }
        let mut written = Vec::new();
        if !self.queues.contains_key(&dead) {
            self.queues.insert(dead.clone(), QueueState::new(None, None));
            written.push(self.record(Change::Declare {
                name: dead.clone(),
                max_deliveries: None,
                dead_letter_queue: None,
            }));
        }
        if !self.queues.contains_key(&spec.name) {
            self.queues.insert(
                spec.name.clone(),
                QueueState::new(Some(max_deliveries), Some(dead.clone())),
            );
            written.push(self.record(Change::Declare {
                name: spec.name.clone(),
                max_deliveries: Some(max_deliveries),
                dead_letter_queue: Some(dead),
            }));
        }
        Ok(written)
    }
}

fn not_found(queue: &str) -> QueueError {
    QueueError::Refused(format!("no queue named {queue:?} was declared"))
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        let written = self.shared.lock().declare(spec)?;
        for written in written {
            written.wait().await?;
        }
        Ok(())
    }

    async fn publish(&self, queue: &str, messages: Vec<Message>) -> Result<(), QueueError> {
        // Stored first, then offered: a consumer never sees a message the file may not keep.
        let (stored, written) = {
            let mut state = self.shared.lock();
            if !state.queues.contains_key(queue) {
                return Err(not_found(queue));
            }
            let stored: Vec<Stored> = messages
                .into_iter()
                .map(|message| Stored {
                    seq: state.next_seq(),
                    message,
                    deliveries: 0,
                })
                .collect();
            let written = state.record(Change::Insert {
                queue: queue.to_owned(),
                rows: stored.iter().map(|s| (s.seq, s.message.clone())).collect(),
            });
            (stored, written)
        };
        written.wait().await?;
        let mut state = self.shared.lock();
        let target = state.queues.get_mut(queue).ok_or_else(|| not_found(queue))?;
        target.ready.extend(stored);
        target.wake();
        Ok(())
    }

    async fn message_count(&self, queue: &str) -> Result<Option<u64>, QueueError> {
        let state = self.shared.lock();
        Ok(state.queues.get(queue).map(|target| target.ready.len() as u64))
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let mut state = self.shared.lock();
        let id = state.next_consumer;
        let target = state.queues.get_mut(queue).ok_or_else(|| not_found(queue))?;
        target.consumers.insert(id, ConsumerSlot { prefetch, unsettled: 0 });
        let notify = target.notify.clone();
        state.next_consumer += 1;
        Ok(Box::new(MemoryConsumer {
            shared: self.shared.clone(),
            queue: queue.to_owned(),
            id,
            notify,
        }))
    }

    async fn ready(&self) -> bool {
        self.is_writable()
    }

    fn system(&self) -> &'static str {
        "shop.memory"
    }
}

/// A consumer of a [`MemoryQueue`]; dropping it returns its unsettled deliveries.
struct MemoryConsumer {
    shared: Arc<Shared>,
    queue: String,
    id: u64,
    notify: Arc<Notify>,
}

impl fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConsumer")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .finish()
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        // Let other tasks run first: a consumer that settles without awaiting anything would
        // otherwise drain the queue before a competing consumer on the same thread gets a turn,
        // where RabbitMQ spreads deliveries over its consumers.
        tokio::task::yield_now().await;
        loop {
            // Registered before looking at the queue, so a wake-up between the look and the
            // wait is not lost.
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let taken = self.shared.lock().take(&self.queue, self.id)?;
            if let Some((tag, stored)) = taken {
                let settle = MemorySettle {
                    shared: self.shared.clone(),
                    queue: self.queue.clone(),
                    tag,
                };
                return Ok(Delivery::new(stored.message, stored.deliveries, Box::new(settle)));
            }
            notified.await;
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let Some(queue) = state.queues.get_mut(&self.queue) else {
            return;
        };
        queue.consumers.remove(&self.id);
        let tags: Vec<u64> = queue
            .unsettled
            .iter()
            .filter(|(_, unsettled)| unsettled.consumer == self.id)
            .map(|(tag, _)| *tag)
            .collect();
        let returned: Vec<(u64, Stored)> = tags
            .into_iter()
            .filter_map(|tag| queue.unsettled.remove(&tag).map(|unsettled| (tag, unsettled.stored)))
            .collect();
        // A destructor cannot wait: the moves of exhausted messages are committed in the
        // background, and should they be lost, the next start dead-letters them again.
        for written in state.return_to_queue(&self.queue, returned) {
            drop(written);
        }
    }
}

/// Settles one delivery of a [`MemoryConsumer`].
struct MemorySettle {
    shared: Arc<Shared>,
    queue: String,
    tag: u64,
}

impl fmt::Debug for MemorySettle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySettle")
            .field("queue", &self.queue)
            .field("tag", &self.tag)
            .finish()
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(&self) -> Result<(), QueueError> {
        let written = {
            let mut state = self.shared.lock();
            let stored = state.settle(&self.queue, self.tag)?;
            state.record(Change::Delete { seq: stored.seq })
        };
        written.wait().await
    }

    async fn retry(&self) -> Result<(), QueueError> {
        let written = {
            let mut state = self.shared.lock();
            let stored = state.settle(&self.queue, self.tag)?;
            state.return_to_queue(&self.queue, vec![(self.tag, stored)])
        };
        for written in written {
            written.wait().await?;
        }
        Ok(())
    }

    async fn dead_letter(&self) -> Result<(), QueueError> {
        let written = {
            let mut state = self.shared.lock();
            let stored = state.settle(&self.queue, self.tag)?;
            state.dead_letter(&self.queue, stored, DeathReason::Rejected)
        };
        written.wait().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn message(id: &str) -> Message {
        Message {
            id: id.to_owned(),
            kind: "k".to_owned(),
            payload: Vec::new(),
            headers: Default::default(),
        }
    }

    #[tokio::test]
    async fn returned_messages_go_to_the_front() {
        let queue = MemoryQueue::new();
        queue.declare(&QueueSpec::new("q")).await.unwrap();
        queue
            .publish("q", vec![message("a"), message("b"), message("c")])
            .await
            .unwrap();
        let mut consumer = queue.consume("q", 0).await.unwrap();
        let a = consumer.next().await.unwrap();
        let b = consumer.next().await.unwrap();
        drop(consumer);
        assert!(matches!(a.ack().await, Err(QueueError::ChannelClosed)));
        assert!(matches!(b.retry().await, Err(QueueError::ChannelClosed)));
        let mut consumer = queue.consume("q", 0).await.unwrap();
        let ids: Vec<(String, u32)> = consumer
            .next_batch(3, std::time::Duration::from_millis(10))
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.message.id.clone(), d.delivery_count))
            .collect();
        assert_eq!(ids, [("a".to_owned(), 2), ("b".to_owned(), 2), ("c".to_owned(), 1)]);
    }

    #[tokio::test]
    async fn redeclaring_with_another_limit_is_refused() {
        let queue = MemoryQueue::new();
        queue.declare(&QueueSpec::new("q")).await.unwrap();
        queue.declare(&QueueSpec::new("q")).await.unwrap();
        let other = QueueSpec::new("q").with_max_deliveries(2);
        assert!(matches!(queue.declare(&other).await, Err(QueueError::Refused(_))));
    }
}
