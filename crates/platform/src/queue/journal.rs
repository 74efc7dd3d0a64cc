//! The SQLite file behind the durable embedded queue ([`super::SqliteQueue`]): every queue
//! declaration and every stored message, so that the queues come back as they were after the
//! process stops, however it stops.
//!
//! One writer task owns the only connection. Changes reach it over a channel in the order the
//! in-process queue made them, and it commits whatever has piled up in one transaction (group
//! commit: one fsync for many changes under load). A change that must be durable before the
//! caller goes on (a declare, a publish, an ack, a dead letter) carries a reply, sent after the
//! commit; a delivery count is recorded without waiting.
//!
//! The connection holds the file in SQLite's exclusive locking mode: a second process opening
//! the same file waits for the busy timeout, then fails, rather than splitting the queues in
//! two. The operating system drops the lock with the process, so a killed run can be restarted
//! at once.

use std::{collections::BTreeMap, path::Path, time::Duration};

use sea_orm::sqlx::{
    self, Connection as _, Row as _,
    sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteLockingMode, SqliteSynchronous},
};
use tokio::sync::{mpsc, oneshot};

use super::{Message, QueueError};

/// At most this many changes are committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How long opening waits for another holder of the file to let go.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queues (
        name TEXT PRIMARY KEY,
        max_deliveries INTEGER,
        dead_letter_queue TEXT
    )",
    "CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload BLOB NOT NULL,
        headers TEXT NOT NULL,
        deliveries INTEGER NOT NULL
    )",
];

/// One change to the stored queues.
#[derive(Debug)]
pub(super) enum Change {
    /// A queue was declared. `None` limit: unlimited; `None` dead-letter queue: discarded.
    Declare {
        name: String,
        max_deliveries: Option<u32>,
        dead_letter_queue: Option<String>,
    },
    /// Messages were published to `queue`, each under its sequence number.
    Insert { queue: String, rows: Vec<(u64, Message)> },
    /// A message was delivered once more.
    Delivered { seq: u64, deliveries: u32 },
    /// A message is done (acknowledged, or dead-lettered where dead letters are discarded).
    Delete { seq: u64 },
    /// A message was dead-lettered: it moves to the back of `queue` under `new_seq`, with the
    /// dead-letter headers, its deliveries counted afresh.
    Move {
        seq: u64,
        new_seq: u64,
        queue: String,
        headers: BTreeMap<String, String>,
    },
}

struct Request {
    change: Change,
    reply: oneshot::Sender<Result<(), String>>,
}

/// The handle the in-process queue records its changes through. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Journal {
    changes: mpsc::UnboundedSender<Request>,
}

/// A change on its way to the file; [`Written::wait`] returns once it is committed.
#[derive(Debug)]
#[must_use = "a change that must be durable is waited for; drop it explicitly otherwise"]
pub(super) struct Written(Option<oneshot::Receiver<Result<(), String>>>);

impl Written {
    /// Nothing to wait for (the queue is not journaled).
    pub(super) fn done() -> Self {
        Self(None)
    }

    /// Waits until the change is committed.
    pub(super) async fn wait(self) -> Result<(), QueueError> {
        let Some(reply) = self.0 else {
            return Ok(());
        };
        match reply.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(QueueError::Unavailable(format!(
                "the work queue file could not be written: {error}"
            ))),
            Err(_) => Err(QueueError::Unavailable("the work queue file is closed".to_owned())),
        }
    }
}

impl Journal {
    /// Sends `change` to the writer; the returned handle says when it is committed.
    pub(super) fn record(&self, change: Change) -> Written {
        let (reply, committed) = oneshot::channel();
        let request = Request { change, reply };
        // Should the writer be gone, the request and its reply sender are dropped here, and
        // waiting reports the file closed.
        self.changes.send(request).ok();
        Written(Some(committed))
    }

    /// Whether the writer is still running.
    pub(super) fn is_open(&self) -> bool {
        !self.changes.is_closed()
    }
}

/// A declared queue as stored.
#[derive(Debug)]
pub(super) struct StoredQueue {
    pub(super) name: String,
    pub(super) max_deliveries: Option<u32>,
    pub(super) dead_letter_queue: Option<String>,
}

/// A message as stored.
#[derive(Debug)]
pub(super) struct StoredMessage {
    pub(super) queue: String,
    pub(super) seq: u64,
    pub(super) message: Message,
    pub(super) deliveries: u32,
}

/// What the file held when it was opened, in publish order.
#[derive(Debug, Default)]
pub(super) struct Contents {
    pub(super) queues: Vec<StoredQueue>,
    pub(super) messages: Vec<StoredMessage>,
}

/// Opens (creating if absent) the file at `path`, reads it, and starts its writer.
pub(super) async fn open(path: &Path) -> Result<(Journal, Contents), QueueError> {
    let failed = |error: &dyn std::fmt::Display| {
        QueueError::Unavailable(format!("opening the work queue file {}: {error}", path.display()))
    };
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| failed(&error))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // Set before the journal mode, so WAL keeps its index in memory rather than in a shared
        // file, and the lock is the connection's alone.
        .locking_mode(SqliteLockingMode::Exclusive)
        .journal_mode(SqliteJournalMode::Wal)
        // As the services' SQLite databases (the outboxes): a commit survives a power cut.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);
    let mut connection = SqliteConnection::connect_with(&options).await.map_err(|error| {
        if error.to_string().contains("locked") {
            failed(&"it is in use by another process")
        } else {
            failed(&error)
        }
    })?;
    let contents = prepare(&mut connection).await.map_err(|error| {
        if error.to_string().contains("locked") {
            failed(&"it is in use by another process")
        } else {
            failed(&error)
        }
    })?;
    let (changes, requests) = mpsc::unbounded_channel();
    tokio::spawn(write(connection, requests));
    Ok((Journal { changes }, contents))
}

/// Creates the tables (taking the file's write lock for good) and reads them.
async fn prepare(connection: &mut SqliteConnection) -> Result<Contents, sqlx::Error> {
    let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
    for statement in SCHEMA {
        sqlx::query(*statement).execute(&mut *transaction).await?;
    }
    transaction.commit().await?;

    let mut contents = Contents::default();
    for row in sqlx::query("SELECT name, max_deliveries, dead_letter_queue FROM queues ORDER BY name")
        .fetch_all(&mut *connection)
        .await?
    {
        contents.queues.push(StoredQueue {
            name: row.try_get("name")?,
            max_deliveries: row
                .try_get::<Option<i64>, _>("max_deliveries")?
                .map(|max| u32::try_from(max).unwrap_or(u32::MAX)),
            dead_letter_queue: row.try_get("dead_letter_queue")?,
        });
    }
    for row in sqlx::query("SELECT seq, queue, id, kind, payload, headers, deliveries FROM messages ORDER BY seq")
        .fetch_all(&mut *connection)
        .await?
    {
        let headers: String = row.try_get("headers")?;
        contents.messages.push(StoredMessage {
            queue: row.try_get("queue")?,
            seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or_default(),
            message: Message {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                payload: row.try_get("payload")?,
                headers: serde_json::from_str(&headers).map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
            },
            deliveries: u32::try_from(row.try_get::<i64, _>("deliveries")?).unwrap_or(u32::MAX),
        });
    }
    Ok(contents)
}

/// The writer: commits the changes as they come, many at a time, until every handle is gone.
async fn write(mut connection: SqliteConnection, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcome = apply(&mut connection, &batch).await.map_err(|error| error.to_string());
        if let Err(error) = &outcome {
            tracing::error!(%error, changes = batch.len(), "writing the work queue file failed");
        }
        for request in batch.drain(..) {
            // The caller may not wait (a delivery count) or have stopped waiting: fine.
            request.reply.send(outcome.clone()).ok();
        }
    }
    // Closing releases the file's lock, so that the queue can be opened again.
    if let Err(error) = connection.close().await {
        tracing::warn!(%error, "closing the work queue file failed");
    }
}

/// Applies `batch` in one transaction.
async fn apply(connection: &mut SqliteConnection, batch: &[Request]) -> Result<(), sqlx::Error> {
    let mut transaction = connection.begin().await?;
    for request in batch {
        match &request.change {
            Change::Declare {
                name,
                max_deliveries,
                dead_letter_queue,
            } => {
                sqlx::query(
                    "INSERT INTO queues (name, max_deliveries, dead_letter_queue) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(max_deliveries.map(i64::from))
                .bind(dead_letter_queue)
                .execute(&mut *transaction)
                .await?;
            }
            Change::Insert { queue, rows } => {
                for (seq, message) in rows {
                    let headers = serde_json::to_string(&message.headers)
                        .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
                    sqlx::query(
                        "INSERT INTO messages (seq, queue, id, kind, payload, headers, deliveries) \
                         VALUES (?, ?, ?, ?, ?, ?, 0)",
                    )
                    .bind(seq_value(*seq))
                    .bind(queue)
                    .bind(&message.id)
                    .bind(&message.kind)
                    .bind(&message.payload)
                    .bind(headers)
                    .execute(&mut *transaction)
                    .await?;
                }
            }
            Change::Delivered { seq, deliveries } => {
                sqlx::query("UPDATE messages SET deliveries = ? WHERE seq = ?")
                    .bind(i64::from(*deliveries))
                    .bind(seq_value(*seq))
                    .execute(&mut *transaction)
                    .await?;
            }
            Change::Delete { seq } => {
                sqlx::query("DELETE FROM messages WHERE seq = ?")
                    .bind(seq_value(*seq))
                    .execute(&mut *transaction)
                    .await?;
            }
            Change::Move {
                seq,
                new_seq,
                queue,
                headers,
            } => {
                let headers = serde_json::to_string(headers).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
                sqlx::query("UPDATE messages SET seq = ?, queue = ?, headers = ?, deliveries = 0 WHERE seq = ?")
                    .bind(seq_value(*new_seq))
                    .bind(queue)
                    .bind(headers)
                    .bind(seq_value(*seq))
                    .execute(&mut *transaction)
                    .await?;
            }
        }
    }
    transaction.commit().await
}

/// Sequence numbers start at 1 and grow by one per message: far from `i64::MAX`.
fn seq_value(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
