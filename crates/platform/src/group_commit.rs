//! Group commit: the writes that callers ask for while a transaction is running are written
//! together in the next one.
//!
//! A commit waits for PostgreSQL to flush its write-ahead log, and under load that flush, not
//! the statements, limits how many small transactions a service gets through. A
//! [`GroupCommit`] puts every submitted item in a queue; each of its writers takes whatever has
//! gathered (up to a batch), hands it to the [`GroupWriter`] as one transaction, and answers
//! every caller with its own outcome. Nobody waits for a batch to fill: a lone request is
//! written at once, and batches grow only while the previous commit is in flight, so latency
//! stays that of one transaction while throughput follows the load. Two writers (the default)
//! let one batch gather while the other commits.
//!
//! The same batching serves reads that many requests make at once: a [`GroupWriter`] whose
//! batch is one query (the order service looks up the idempotency keys of concurrent
//! placements this way).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Writes a batch of items in one transaction.
#[async_trait]
pub trait GroupWriter: Send + Sync + 'static {
    /// What a caller submits.
    type Item: Send + 'static;
    /// What a caller is answered.
    type Outcome: Send + 'static;

    /// Writes `items` and returns one outcome per item, in the same order. A writer decides what
    /// one item's failure means for the others (it may write the rest again without it).
    async fn write(&self, items: Vec<Self::Item>) -> Vec<Self::Outcome>;
}

/// How a [`GroupCommit`] batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupOptions {
    /// The most items in one transaction.
    pub max_batch: usize,
    /// Writers running at once.
    pub writers: usize,
    /// Items that may wait for a writer; beyond it `submit` waits for room.
    pub capacity: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            max_batch: 128,
            writers: 2,
            capacity: 4096,
        }
    }
}

/// The group committer stopped (its writer panicked, or the runtime is shutting down): the
/// item was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the group committer stopped before writing")]
pub struct Stopped;

type Entry<W> = (<W as GroupWriter>::Item, oneshot::Sender<<W as GroupWriter>::Outcome>);

/// Submits items to be written in shared transactions; cheap to clone. The writers stop when
/// the last clone is dropped, after writing what was submitted.
pub struct GroupCommit<W: GroupWriter> {
    queue: mpsc::Sender<Entry<W>>,
}

impl<W: GroupWriter> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<W: GroupWriter> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("waiting", &(self.queue.max_capacity() - self.queue.capacity()))
            .finish()
    }
}

impl<W: GroupWriter> GroupCommit<W> {
    /// Starts the writers (on the current tokio runtime).
    pub fn start(writer: W, options: GroupOptions) -> Self {
        let (queue, receiver) = mpsc::channel(options.capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let writer = Arc::new(writer);
        for _ in 0..options.writers.max(1) {
            tokio::spawn(write_batches(
                Arc::clone(&writer),
                Arc::clone(&receiver),
                options.max_batch.max(1),
            ));
        }
        Self { queue }
    }

    /// Writes `item` with whatever else is waiting, and returns its outcome. If the caller stops
    /// waiting, the item is still written.
    pub async fn submit(&self, item: W::Item) -> Result<W::Outcome, Stopped> {
        let (reply, outcome) = oneshot::channel();
        self.queue.send((item, reply)).await.map_err(|_| Stopped)?;
        outcome.await.map_err(|_| Stopped)
    }
}

/// One writer: takes what has gathered (the queue's lock is held only while taking, so the
/// other writer gathers the next batch while this one writes), writes it, answers.
async fn write_batches<W: GroupWriter>(writer: Arc<W>, queue: Arc<Mutex<mpsc::Receiver<Entry<W>>>>, max_batch: usize) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut batch, max_batch).await == 0 {
                return; // every submitter is gone
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let outcomes = writer.write(items).await;
        debug_assert_eq!(outcomes.len(), replies.len(), "one outcome per item");
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that stopped waiting has nobody to tell.
            let _ = reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    /// Doubles numbers, a batch at a time, slowly, and remembers the batch sizes.
    struct Doubler {
        batches: std::sync::Mutex<Vec<usize>>,
        writing: AtomicUsize,
        most_at_once: AtomicUsize,
    }

    #[async_trait]
    impl GroupWriter for Doubler {
        type Item = u32;
        type Outcome = u32;

        async fn write(&self, items: Vec<u32>) -> Vec<u32> {
            let now = self.writing.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            self.batches.lock().map(|mut b| b.push(items.len())).ok();
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.writing.fetch_sub(1, Ordering::SeqCst);
            items.into_iter().map(|n| n * 2).collect()
        }
    }

    fn doubler() -> Doubler {
        Doubler {
            batches: std::sync::Mutex::new(Vec::new()),
            writing: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
        }
    }

    #[tokio::test]
    async fn concurrent_submissions_share_transactions_and_get_their_own_outcome() {
        let writer = Arc::new(doubler());
        struct Shared(Arc<Doubler>);
        #[async_trait]
        impl GroupWriter for Shared {
            type Item = u32;
            type Outcome = u32;
            async fn write(&self, items: Vec<u32>) -> Vec<u32> {
                self.0.write(items).await
            }
        }
        let group = GroupCommit::start(
            Shared(Arc::clone(&writer)),
            GroupOptions {
                max_batch: 50,
                writers: 2,
                capacity: 1000,
            },
        );
        let answers = futures::future::join_all((0..400u32).map(|n| {
            let group = group.clone();
            async move { (n, group.submit(n).await) }
        }))
        .await;
        for (n, answer) in answers {
            assert_eq!(answer, Ok(n * 2));
        }
        let batches = writer.batches.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(batches.iter().sum::<usize>(), 400);
        assert!(batches.iter().all(|size| *size <= 50), "{batches:?}");
        assert!(
            batches.len() <= 20,
            "400 concurrent items took {} transactions: {batches:?}",
            batches.len()
        );
        assert_eq!(writer.most_at_once.load(Ordering::SeqCst), 2, "two writers overlap");
    }

    #[tokio::test]
    async fn a_lone_item_is_written_at_once() {
        let group = GroupCommit::start(doubler(), GroupOptions::default());
        let started = std::time::Instant::now();
        assert_eq!(group.submit(21).await, Ok(42));
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
