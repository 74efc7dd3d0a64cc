//! The outbox relay: publishes unsent outbox rows in insertion order, waits for the broker's
//! confirms, then marks them sent, all inside one database transaction. On PostgreSQL the
//! transaction first takes an advisory lock per schema, so with several replicas exactly one
//! relays at a time and order is kept; the others wait their turn. If publishing fails, or the
//! process dies before the commit, nothing is marked and the rows go out again on the next pass
//! (consumers dedupe on the message id).
//!
//! Each pass reads on from the last row it sent (the rows behind it that are sent still sit in
//! the index until a vacuum, and walking them on every pass cost milliseconds per pass under
//! load), and at most every [`RESCAN_INTERVAL`] from the start: a transaction that committed
//! after a later one was relayed (its row's `seq` is below the cursor) is sent by that rescan,
//! so no row waits longer than that.
//!
//! [`OutboxGauge`] reports how far the relay is behind: `shop.outbox.pending` (unsent rows) and
//! `shop.outbox.oldest_age` (seconds the oldest unsent row has waited; 0 when none waits), one
//! series per service (`shop.outbox`), read by a periodic poll on the relay's own index.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, sea_query::Expr,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::entity;
use crate::{
    backoff::Backoff,
    queue::{Message, WorkQueue, bundle},
    telemetry::{
        messaging,
        metrics::{self, BacklogGauges},
        propagation,
    },
};

/// How often a pass reads the unsent rows from the start instead of from the last row sent.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Where a relay reads from: after the last row it sent, and when it last read from the start.
#[derive(Debug, Default)]
struct Cursor {
    after: Option<i64>,
    rescanned_at: Option<Instant>,
}

impl Cursor {
    /// The `seq` to read after, or `None` to read from the start (and note that it did).
    fn start(&mut self) -> Option<i64> {
        if self.rescanned_at.is_none_or(|at| at.elapsed() >= RESCAN_INTERVAL) {
            self.rescanned_at = Some(Instant::now());
            return None;
        }
        self.after
    }

    /// Rows up to `seq` were sent (committed).
    fn sent(&mut self, seq: i64) {
        self.after = Some(self.after.map_or(seq, |after| after.max(seq)));
    }
}

/// How the relay paces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayOptions {
    /// Rows published per transaction.
    pub batch_size: u64,
    /// The most messages for one queue that go out in one broker message (a bundle, see
    /// [`crate::queue::bundle`]); 1 sends each on its own.
    pub bundle_size: usize,
    /// How often to look for rows when nobody calls [`OutboxRelay::wake`].
    pub poll_interval: Duration,
    /// Longest pause after a failed pass (the pause doubles from `poll_interval` up to this).
    pub max_backoff: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 200,
            bundle_size: bundle::DEFAULT_BUNDLE_SIZE,
            poll_interval: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RelayOptions {
    /// The defaults, with the bundle size from `SHOP_OUTBOX_BUNDLE_SIZE` (1 to 1000; 1 sends
    /// every message on its own, as before bundles: for a rolling upgrade from such a version).
    pub fn from_env(env: &impl crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let defaults = Self::default();
        let bundle_size = env.parse_or("SHOP_OUTBOX_BUNDLE_SIZE", defaults.bundle_size)?;
        if !(1..=1_000).contains(&bundle_size) {
            return Err(crate::config::ConfigError::new(
                "SHOP_OUTBOX_BUNDLE_SIZE",
                "must be 1 to 1000",
            ));
        }
        Ok(Self {
            bundle_size,
            ..defaults
        })
    }
}

/// Publishes one service's outbox to the work queue.
#[derive(Clone, Debug)]
pub struct OutboxRelay {
    db: DatabaseConnection,
    queue: Arc<dyn WorkQueue>,
    options: RelayOptions,
    wake: Arc<Notify>,
    cursor: Arc<Mutex<Cursor>>,
}

impl OutboxRelay {
    /// A relay for the outbox in `db`, publishing to `queue`.
    pub fn new(db: DatabaseConnection, queue: Arc<dyn WorkQueue>, options: RelayOptions) -> Self {
        Self {
            db,
            queue,
            options,
            wake: Arc::new(Notify::new()),
            cursor: Arc::default(),
        }
    }

    /// Asks the relay to look now (call after committing a transaction that enqueued), instead
    /// of waiting for the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Relays until `shutdown` is cancelled; a pass in progress finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.options.poll_interval, self.options.max_backoff);
        loop {
            let pause = match self.relay_once().await {
                // A full batch means more may be waiting: go again at once.
                Ok(count) if count as u64 >= self.options.batch_size => {
                    backoff.reset();
                    Duration::ZERO
                }
                Ok(_) => {
                    backoff.reset();
                    self.options.poll_interval
                }
                Err(error) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(error = format!("{error:#}"), retry_in = ?pause, "outbox relay pass failed");
                    pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One pass: publishes up to `batch_size` unsent rows in order and marks them sent.
    /// Returns how many were published (0 also when another replica holds the relay lock).
    #[tracing::instrument(name = "outbox.relay", level = "debug", skip(self), err(Display))]
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let txn = crate::db::begin_write(&self.db)
            .await
            .context("starting the relay transaction")?;
        let after = self.cursor().start();
        match self.publish_unsent(&txn, after).await {
            Ok(None) => {
                txn.rollback().await.context("ending the relay transaction")?;
                Ok(0)
            }
            Ok(Some((count, last))) => {
                txn.commit().await.context("committing the relay transaction")?;
                self.cursor().sent(last);
                tracing::debug!(count, "outbox rows published");
                Ok(count)
            }
            Err(error) => {
                // Roll back now rather than on drop, so the relay lock is free for the next pass.
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back the relay transaction failed");
                }
                Err(error)
            }
        }
    }

    fn cursor(&self) -> std::sync::MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inside `txn`: takes the relay lock, publishes the oldest unsent rows (after `seq` when
    /// given) and marks them sent; how many, and the last one's `seq` (`None` when none).
    async fn publish_unsent(
        &self,
        txn: &DatabaseTransaction,
        after: Option<i64>,
    ) -> anyhow::Result<Option<(usize, i64)>> {
        // The lock is a statement of its own, before the read: under READ COMMITTED a statement
        // reads as of its start, so a read that also took the lock (in a sub-select) could see
        // the rows the previous holder marked sent as unsent, if it committed between the
        // read's start and the lock, and publish them again.
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            let lock = Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock(hashtext('shop.outbox.' || current_schema())) AS locked",
            );
            let row = txn.query_one_raw(lock).await?.context("no reply to the lock query")?;
            if !row.try_get::<bool>("", "locked")? {
                return Ok(None);
            }
        }
        let mut unsent = entity::Entity::find().filter(entity::Column::PublishedAt.is_null());
        if let Some(seq) = after {
            unsent = unsent.filter(entity::Column::Seq.gt(seq));
        }
        let rows = unsent
            .order_by_asc(entity::Column::Seq)
            .limit(self.options.batch_size)
            .all(txn)
            .await
            .context("reading unsent outbox rows")?;

        // Consecutive rows for one queue go out as one confirmed batch, in bundles; order is kept.
        for run in rows.chunk_by(|a, b| a.destination == b.destination) {
            let destination = &run[0].destination;
            // One PRODUCER span per message, in the trace of the work that wrote the row; the
            // message carries the span's context to its consumer.
            let (messages, spans): (Vec<Message>, Vec<tracing::Span>) = run
                .iter()
                .map(|row| {
                    let mut message = to_message(row);
                    let span = messaging::send_span(self.queue.system(), destination, &message);
                    message.headers.remove("traceparent");
                    message.headers.remove("tracestate");
                    span.in_scope(|| propagation::inject_message(&mut message.headers));
                    (message, span)
                })
                .unzip();
            let bundles = bundle::pack_all(messages, self.options.bundle_size);
            let published = self.queue.publish(destination, bundles).await;
            if let Err(error) = &published {
                for span in &spans {
                    messaging::record_failure(span, error);
                }
            }
            published.with_context(|| format!("publishing to {destination}"))?;
        }
        let Some(last) = rows.last().map(|row| row.seq) else {
            return Ok(None);
        };

        let sequences: Vec<i64> = rows.iter().map(|row| row.seq).collect();
        entity::Entity::update_many()
            .col_expr(entity::Column::PublishedAt, Expr::value(chrono::Utc::now()))
            .filter(crate::db::one_of(
                txn.get_database_backend(),
                entity::Column::Seq,
                sequences,
            ))
            .exec(txn)
            .await
            .context("marking outbox rows sent")?;
        Ok(Some((rows.len(), last)))
    }
}

fn to_message(row: &entity::Model) -> Message {
    Message {
        id: row.id.to_string(),
        kind: row.kind.clone(),
        payload: row.payload.clone(),
        headers: serde_json::from_str::<BTreeMap<String, String>>(&row.headers).unwrap_or_default(),
    }
}

/// The outbox gauges of one service: `shop.outbox.pending` and `shop.outbox.oldest_age`,
/// labelled `shop.outbox` with the service's name. Poll it with [`OutboxGauge::run`].
#[derive(Clone, Debug)]
pub struct OutboxGauge {
    db: DatabaseConnection,
    outbox: String,
}

fn outbox_gauges() -> &'static BacklogGauges {
    static GAUGES: OnceLock<BacklogGauges> = OnceLock::new();
    GAUGES.get_or_init(|| {
        BacklogGauges::new(
            "shop.outbox.pending",
            "{message}",
            "Outbox rows not yet published to the work queue.",
            "shop.outbox.oldest_age",
            "Seconds the oldest unpublished outbox row has waited; 0 when none waits.",
        )
    })
}

impl OutboxGauge {
    /// The gauges of the outbox in `db`, which belongs to service `outbox` (`order`, …).
    pub fn new(db: DatabaseConnection, outbox: impl Into<String>) -> Self {
        Self {
            db,
            outbox: outbox.into(),
        }
    }

    /// Reads both values now: a count and a first row, both found through the relay's own
    /// index of unsent rows (`outbox_unsent`), so their cost grows with the backlog only.
    pub async fn poll(&self) -> anyhow::Result<()> {
        let unsent = entity::Entity::find().filter(entity::Column::PublishedAt.is_null());
        outbox_gauges()
            .poll(
                &[("shop.outbox", self.outbox.as_str())],
                &self.db,
                unsent,
                entity::Column::CreatedAt,
                entity::Column::Seq,
                chrono::Utc::now(),
            )
            .await
            .context("reading the outbox gauges")
    }

    /// Polls every `interval` until `shutdown`, the first time at once.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        metrics::poll_every("shop.outbox", interval, shutdown, || self.poll()).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn the_bundle_size_is_read_and_checked() {
        assert_eq!(
            RelayOptions::from_env(&MapEnv::default()).unwrap(),
            RelayOptions::default()
        );
        let one = RelayOptions::from_env(&MapEnv::from_pairs([("SHOP_OUTBOX_BUNDLE_SIZE", "1")])).unwrap();
        assert_eq!(one.bundle_size, 1);
        for bad in ["0", "1001", "-3", "many"] {
            let error = RelayOptions::from_env(&MapEnv::from_pairs([("SHOP_OUTBOX_BUNDLE_SIZE", bad)])).unwrap_err();
            assert!(error.to_string().contains("SHOP_OUTBOX_BUNDLE_SIZE"), "{bad}: {error}");
        }
    }
}
