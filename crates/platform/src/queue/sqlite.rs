//! The durable embedded work queue (`sqlite://<path>`): the in-process queue, journaled to a
//! SQLite file, so that the one-process run loses no message when it is killed.
//!
//! The queue itself is [`MemoryQueue`] (the same delivery, prefetch, retry and dead-letter
//! semantics, proven by the same contract suite); the file ([`super::journal`]) only has to
//! hold what must outlive the process:
//! - a declare, a publish, an ack, a retry that dead-letters and an explicit dead letter return
//!   only once committed, so a confirmed publish is as durable as the outbox row it came from;
//! - each delivery's count is written as it is handed out, so a message that keeps killing
//!   the process still reaches its delivery limit;
//! - dead letters are rows of `<queue>.dead`, kept until consumed.
//!
//! At start every stored message is ready again, those delivered but unsettled when the process
//! died included (redelivered with their count, as after a dropped consumer); those that had
//! used up their deliveries go to the dead-letter queue. Consumers dedupe on the message id, as
//! they do for RabbitMQ's redeliveries.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use async_trait::async_trait;

use super::{Consumer, MemoryQueue, Message, QueueError, QueueSpec, WorkQueue, journal};

/// The in-process work queue, kept in a SQLite file. One process at a time may open a file.
#[derive(Clone)]
pub struct SqliteQueue {
    queue: MemoryQueue,
    path: PathBuf,
}

impl SqliteQueue {
    /// Opens the queues stored at `path` (creating the file and its directory if absent). Fails
    /// with [`QueueError::Unavailable`] if the file cannot be read or written, or if another
    /// process holds it.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, QueueError> {
        let path = path.as_ref().to_owned();
        let (journal, contents) = journal::open(&path).await?;
        let stored = contents.messages.len();
        let queue = MemoryQueue::restore(journal, contents);
        if stored > 0 {
            tracing::info!(path = %path.display(), messages = stored, "work queue restored from its file");
        }
        Ok(Self { queue, path })
    }

    /// Opens the queue a `sqlite://<path>` URL names (`sqlite:///var/lib/shop/queue.db`).
    pub async fn open_url(url: &str) -> Result<Self, QueueError> {
        Self::open(path_of_url(url)?).await
    }

    /// The file the queue is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file path of a `sqlite://<path>` (or `sqlite:<path>`) queue URL.
fn path_of_url(url: &str) -> Result<&str, QueueError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| QueueError::Refused(format!("{url:?} is not a sqlite:// URL")))?;
    if path.is_empty() || path.contains('?') {
        return Err(QueueError::Refused(format!(
            "a work queue file URL is sqlite://<path>, without options: {url:?}"
        )));
    }
    Ok(path)
}

impl fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("path", &self.path)
            .field("queue", &self.queue)
            .finish()
    }
}

#[async_trait]
impl WorkQueue for SqliteQueue {
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        self.queue.declare(spec).await
    }

    async fn publish(&self, queue: &str, messages: Vec<Message>) -> Result<(), QueueError> {
        self.queue.publish(queue, messages).await
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.queue.consume(queue, prefetch).await
    }

    async fn ready(&self) -> bool {
        self.queue.ready().await
    }

    fn system(&self) -> &'static str {
        "shop.sqlite"
    }

    async fn message_count(&self, queue: &str) -> Result<Option<u64>, QueueError> {
        self.queue.message_count(queue).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths() {
        assert_eq!(
            path_of_url("sqlite:///srv/shop/queue.db").ok(),
            Some("/srv/shop/queue.db")
        );
        assert_eq!(path_of_url("sqlite://data/queue.db").ok(), Some("data/queue.db"));
        assert_eq!(path_of_url("sqlite:queue.db").ok(), Some("queue.db"));
        for bad in ["sqlite://", "sqlite:///q.db?mode=rwc", "memory://"] {
            assert!(matches!(path_of_url(bad), Err(QueueError::Refused(_))), "{bad}");
        }
    }
}
