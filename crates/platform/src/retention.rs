//! Retention: rows that have done their job are deleted once they are older than an age, so
//! that no table grows forever. Each service lists its tables as [`Rule`]s (the platform's own,
//! `outbox` and `inbox`, come from [`messaging_rules`]) and runs one [`Sweeper`] next to its
//! other background tasks.
//!
//! A sweep deletes in bounded batches, each one short statement on its own (autocommit): no
//! long transaction, no table-wide lock, and the service's writes go on in between. The batch
//! picks rows by physical address (`ctid` on PostgreSQL, `rowid` on SQLite), so a rule needs
//! no primary key and the delete finds its rows without a second search.
//!
//! Replica safety without a lock: every replica sweeps, and sweeps may overlap. A delete of
//! rows older than a cutoff is idempotent, so two sweepers can only ever delete a row once
//! between them. On PostgreSQL the batch's rows are taken `FOR UPDATE SKIP LOCKED`, so
//! overlapping sweepers take disjoint batches instead of queueing behind each other's row
//! locks (and rows the service itself holds locked are left for the next pass); SQLite has one
//! writer at a time anyway. No advisory lock is needed: nothing has to be held, released, or
//! recovered when a replica dies mid-sweep, and the cost of overlap is one wasted index probe
//! per batch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Backoff,
    config::{ConfigError, Env},
};

const DAY: Duration = Duration::from_secs(86_400);

/// Rows deleted per statement: small enough that a batch holds its row locks for
/// milliseconds, large enough that a backlog of millions clears in minutes.
pub const DEFAULT_BATCH_SIZE: u64 = 1_000;

/// The platform's retention settings (the services add ages for their own tables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionSettings {
    /// How often a replica sweeps (`SHOP_RETENTION_INTERVAL` [1h]).
    pub interval: Duration,
    /// Published outbox rows are kept this long after their publish was confirmed
    /// (`SHOP_RETENTION_OUTBOX` [1d]): nothing reads them again; the age only leaves time to
    /// look at what went out.
    pub outbox: Duration,
    /// Inbox ids are kept this long after their message was applied (`SHOP_RETENTION_INBOX`
    /// [7d]): the redelivery horizon, see `docs/reliability.md`, "Retention".
    pub inbox: Duration,
    /// The most messages a dead-letter queue holds; beyond it the oldest are dropped
    /// (`SHOP_DEAD_LETTER_MAX_LENGTH` [100000]).
    pub dead_letter_max_length: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3_600),
            outbox: DAY,
            inbox: 7 * DAY,
            dead_letter_max_length: 100_000,
        }
    }
}

impl RetentionSettings {
    /// Reads and validates the settings.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let settings = Self {
            interval: age(env, "SHOP_RETENTION_INTERVAL", defaults.interval)?,
            outbox: age(env, "SHOP_RETENTION_OUTBOX", defaults.outbox)?,
            inbox: age(env, "SHOP_RETENTION_INBOX", defaults.inbox)?,
            dead_letter_max_length: dead_letter_max_length(env)?,
        };
        // Below an hour, a message held through an ordinary outage, or re-driven by an
        // operator the same day, could find its id gone and be applied a second time.
        if settings.inbox < Duration::from_secs(3_600) {
            return Err(ConfigError::new(
                "SHOP_RETENTION_INBOX",
                "at least 1h: ids must outlive every redelivery of their message",
            ));
        }
        Ok(settings)
    }
}

/// The bound of the dead-letter queues a service declares (`SHOP_DEAD_LETTER_MAX_LENGTH`
/// [100000], positive): read on its own by a service that consumes a queue but keeps no
/// outbox or inbox to sweep.
pub fn dead_letter_max_length(env: &impl Env) -> Result<u32, ConfigError> {
    let max_length = env.parse_or(
        "SHOP_DEAD_LETTER_MAX_LENGTH",
        RetentionSettings::default().dead_letter_max_length,
    )?;
    if max_length == 0 {
        return Err(ConfigError::new("SHOP_DEAD_LETTER_MAX_LENGTH", "must be positive"));
    }
    Ok(max_length)
}

/// A retention age (or interval) from `key`: positive, `default` when unset.
pub fn age(env: &impl Env, key: &str, default: Duration) -> Result<Duration, ConfigError> {
    let value = env.duration_or(key, default)?;
    if value.is_zero() {
        return Err(ConfigError::new(key, "must be positive"));
    }
    Ok(value)
}

/// One table's retention: rows whose `timestamp` is older than `age` (and that meet
/// `condition`, if any) are deleted. A row whose `timestamp` is NULL is never deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The table.
    pub table: &'static str,
    /// Its timestamp column the age is measured from.
    pub timestamp: &'static str,
    /// How old a row must be to go.
    pub age: Duration,
    /// An extra SQL condition on the table's columns (written in code, never from input; the
    /// table may be referred to by its name), for rows that must stay whatever their age.
    pub condition: Option<&'static str>,
}

impl Rule {
    /// Rows of `table` older than `age` by `timestamp`.
    pub fn new(table: &'static str, timestamp: &'static str, age: Duration) -> Self {
        Self {
            table,
            timestamp,
            age,
            condition: None,
        }
    }

    /// Only the rows that also meet `condition`.
    pub fn only_where(mut self, condition: &'static str) -> Self {
        self.condition = Some(condition);
        self
    }

    /// The DELETE of one batch of at most `limit` rows older than the bound parameter.
    fn delete_batch(&self, backend: DatabaseBackend, limit: u64, cutoff: DateTime<Utc>) -> Statement {
        let table = self.table;
        let timestamp = self.timestamp;
        let extra = self.condition.map(|c| format!(" AND ({c})")).unwrap_or_default();
        let sql = match backend {
            // `ctid = ANY(ARRAY(…))` is a TID scan; `ctid IN (SELECT …)` may become a join
            // over the whole table.
            DatabaseBackend::Postgres => format!(
                r#"DELETE FROM "{table}" WHERE ctid = ANY(ARRAY(SELECT ctid FROM "{table}" WHERE "{timestamp}" < $1{extra} LIMIT {limit} FOR UPDATE SKIP LOCKED))"#
            ),
            _ => format!(
                r#"DELETE FROM "{table}" WHERE rowid IN (SELECT rowid FROM "{table}" WHERE "{timestamp}" < ?{extra} LIMIT {limit})"#
            ),
        };
        Statement::from_sql_and_values(backend, sql, [cutoff.into()])
    }
}

/// The platform's tables: published outbox rows (never unsent ones: their `published_at` is
/// NULL) and inbox ids past the redelivery horizon.
pub fn messaging_rules(settings: &RetentionSettings) -> Vec<Rule> {
    vec![
        Rule::new("outbox", "published_at", settings.outbox),
        Rule::new("inbox", "processed_at", settings.inbox),
    ]
}

/// What one table's sweep deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swept {
    /// The table.
    pub table: &'static str,
    /// Rows deleted.
    pub deleted: u64,
}

/// Deletes old rows of a service's tables, in bounded batches; see the module documentation.
#[derive(Clone, Debug)]
pub struct Sweeper {
    db: DatabaseConnection,
    rules: Vec<Rule>,
    batch_size: u64,
}

impl Sweeper {
    /// A sweeper of `rules` in `db`.
    pub fn new(db: DatabaseConnection, rules: Vec<Rule>) -> Self {
        Self {
            db,
            rules,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// Deletes at most `batch_size` rows per statement (at least 1).
    pub fn batch_size(mut self, batch_size: u64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sweeps every `interval` until `shutdown`, the first time at once. A failed sweep (the
    /// database is down) is tried again with backoff, never sooner than a few seconds.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_secs(5), interval.max(Duration::from_secs(5)));
        loop {
            let pause = match self.sweep(Utc::now(), &shutdown).await {
                Ok(swept) => {
                    backoff.reset();
                    for Swept { table, deleted } in swept.into_iter().filter(|s| s.deleted > 0) {
                        tracing::info!(table, deleted, "retention: old rows deleted");
                    }
                    interval
                }
                Err(error) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(%error, retry_in = ?pause, "retention sweep failed");
                    pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One sweep as of `now`: for each rule in turn, deletes batches until one comes back
    /// short. Stops between batches when `shutdown` is cancelled.
    pub async fn sweep(&self, now: DateTime<Utc>, shutdown: &CancellationToken) -> Result<Vec<Swept>, DbErr> {
        let backend = self.db.get_database_backend();
        let mut swept = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let age = chrono::Duration::from_std(rule.age).unwrap_or(chrono::Duration::MAX);
            let cutoff = now.checked_sub_signed(age).unwrap_or(DateTime::<Utc>::MIN_UTC);
            let mut deleted = 0;
            while !shutdown.is_cancelled() {
                let batch = self
                    .db
                    .execute_raw(rule.delete_batch(backend, self.batch_size, cutoff))
                    .await?
                    .rows_affected();
                deleted += batch;
                if batch < self.batch_size {
                    break;
                }
            }
            swept.push(Swept {
                table: rule.table,
                deleted,
            });
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn defaults_and_validation() {
        assert_eq!(
            RetentionSettings::from_env(&MapEnv::default()).ok(),
            Some(RetentionSettings::default())
        );
        for (key, value) in [
            ("SHOP_RETENTION_INTERVAL", "0s"),
            ("SHOP_RETENTION_OUTBOX", "soon"),
            ("SHOP_RETENTION_INBOX", "30m"),
            ("SHOP_DEAD_LETTER_MAX_LENGTH", "0"),
            ("SHOP_DEAD_LETTER_MAX_LENGTH", "-5"),
        ] {
            let error = RetentionSettings::from_env(&MapEnv::from_pairs([(key, value)])).err();
            assert_eq!(error.map(|e| e.key).as_deref(), Some(key), "{key}={value}");
        }
        let settings = RetentionSettings::from_env(&MapEnv::from_pairs([("SHOP_RETENTION_INBOX", "30d")])).ok();
        assert_eq!(settings.map(|s| s.inbox), Some(30 * DAY));
    }

    #[test]
    fn batches_are_bounded_and_conditioned() {
        let rule = Rule::new("releases", "created_at", DAY).only_where("x = 1");
        let pg = rule.delete_batch(DatabaseBackend::Postgres, 10, Utc::now()).sql;
        assert!(
            pg.contains(r#""created_at" < $1 AND (x = 1) LIMIT 10 FOR UPDATE SKIP LOCKED"#),
            "{pg}"
        );
        let sqlite = rule.delete_batch(DatabaseBackend::Sqlite, 10, Utc::now()).sql;
        assert!(sqlite.contains(r#"rowid IN (SELECT rowid FROM "releases""#), "{sqlite}");
    }
}
