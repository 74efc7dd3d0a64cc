//! Database connections by URL and migrations at start. `postgres://…` gives every service its
//! own schema in one database (`search_path` set per connection, schema created if absent);
//! `sqlite://…` gives the embedded single-process run one file per service. Migrations of one
//! service run under a PostgreSQL advisory lock, so replicas starting together do not race.

use std::time::Duration;

use anyhow::Context as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

/// Which database a service uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`.
    pub url: String,
    /// The service's schema (PostgreSQL) or file-name suffix (SQLite): `user`, `catalog`, …
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
}

impl DatabaseConfig {
    /// The database of service `schema` at `url`, with a pool of 10.
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: schema.into(),
            max_connections: 10,
        }
    }

    /// The URL this service actually connects to: PostgreSQL URLs are shared (schemas keep
    /// services apart); a SQLite file gets the service name appended (`shop.db` → `shop-user.db`).
    pub fn service_url(&self) -> String {
        match sqlite_path(&self.url) {
            Some((path, query)) => {
                let (stem, ext) = match path.rsplit_once('.') {
                    Some((stem, ext)) if !ext.contains('/') => (stem, format!(".{ext}")),
                    _ => (path, String::new()),
                };
                let query = if query.is_empty() {
                    "?mode=rwc".to_owned()
                } else {
                    query.to_owned()
                };
                format!("sqlite://{stem}-{}{ext}{query}", self.schema)
            }
            None => self.url.clone(),
        }
    }
}

/// Splits `sqlite://path?query` into path and `?query`.
fn sqlite_path(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(match rest.find('?') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    })
}

/// Connects to the service's database, creating its schema (PostgreSQL) or file (SQLite).
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<DatabaseConnection> {
    if !is_safe_identifier(&config.schema) {
        anyhow::bail!(
            "schema name {:?} must be lower-case letters, digits and _",
            config.schema
        );
    }
    let url = config.service_url();
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(config.max_connections)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);

    if url.starts_with("sqlite:") {
        if let Some((path, _)) = sqlite_path(&url)
            && let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        options.map_sqlx_sqlite_opts(|opts| {
            opts.create_if_missing(true)
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        // Create the schema first, on a plain connection, then pin search_path to it.
        let bootstrap = Database::connect(ConnectOptions::new(url.clone()).sqlx_logging(false).to_owned())
            .await
            .with_context(|| format!("connecting to {}", crate::config::redact_url(&url)))?;
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", config.schema);
        if let Err(error) = bootstrap.execute_unprepared(&create).await
            && !is_concurrent_create(&error)
        {
            return Err(error).context("creating the service's schema");
        }
        bootstrap.close().await.ok();
        options.set_schema_search_path(config.schema.clone());
    }
    let db = Database::connect(options)
        .await
        .with_context(|| format!("connecting to {}", crate::config::redact_url(&url)))?;
    Ok(db)
}

/// Runs the service's pending migrations; on PostgreSQL one replica at a time.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection, schema: &str) -> anyhow::Result<()> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_unprepared(&format!(
                "SELECT pg_advisory_xact_lock(hashtext('shop.migrate.{schema}'))"
            ))
            .await?;
            M::up(&txn, None)
                .await
                .with_context(|| format!("migrating schema {schema}"))?;
            txn.commit().await?;
        }
        _ => M::up(db, None).await.with_context(|| format!("migrating {schema}"))?,
    }
    Ok(())
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so two writers wait for each other (busy timeout) instead of one failing
/// with "database is locked" when it upgrades its read lock; elsewhere it is a plain `BEGIN`.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Two replicas creating one schema at once: the loser's unique violation is harmless.
fn is_concurrent_create(error: &sea_orm::DbErr) -> bool {
    let message = error.to_string();
    message.contains("duplicate key") || message.contains("already exists")
}

fn is_safe_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_one_file_per_service() {
        let config = DatabaseConfig::new("sqlite:///var/lib/shop/shop.db?mode=rwc", "user");
        assert_eq!(config.service_url(), "sqlite:///var/lib/shop/shop-user.db?mode=rwc");
        let config = DatabaseConfig::new("sqlite://data/shop", "order");
        assert_eq!(config.service_url(), "sqlite://data/shop-order?mode=rwc");
    }

    #[test]
    fn postgres_urls_are_shared() {
        let config = DatabaseConfig::new("postgres://u@h/shop", "catalog");
        assert_eq!(config.service_url(), "postgres://u@h/shop");
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(is_safe_identifier("order_v2"));
        assert!(!is_safe_identifier("x\"; drop"));
        assert!(!is_safe_identifier("1abc"));
    }
}
