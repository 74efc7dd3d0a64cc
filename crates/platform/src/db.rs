//! Database connections by URL and migrations at start. `postgres://…` gives every service its
//! own schema in one database (`search_path` set per connection, schema created if absent);
//! `sqlite://…` gives the embedded single-process run one file per service. Migrations of one
//! service run under a PostgreSQL advisory lock, so replicas starting together do not race.
//!
//! Who migrates is [`MigrateMode`] (`SHOP_MIGRATE`): by default every process migrates at
//! start; in Kubernetes a Job (a Helm hook) runs the binary with `only` under a DDL-capable
//! role, which also grants the service's runtime role (`SHOP_MIGRATE_GRANT_TO`) exactly
//! reading and writing rows, and the serving pods run with `skip` under that runtime role: they
//! never create a schema or table, and refuse to start on a schema that is behind.
//!
//! Every pool [`connect`] opens is reported as the OpenTelemetry database client conventions
//! say: `db.client.connection.count` (by `db.client.connection.state`: `used`, `idle`) and
//! `db.client.connection.max`, labelled `db.client.connection.pool.name` with the service's
//! schema. Both are read from the pool itself when scraped: no query, no cost per request.
//! Every statement a pool runs is timed into `db.client.operation.duration` (by
//! `db.operation.name`: `SELECT`, `INSERT`, `UPDATE`, `DELETE` or `OTHER`, and `error.type` when
//! it failed), under the same pool name: its count is the statements per second each service
//! asks of its database, the figure batching exists to keep low.

use std::{
    collections::BTreeMap,
    sync::{Mutex, OnceLock, PoisonError},
    time::Duration,
};

use anyhow::Context as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

mod json_rows;
pub use json_rows::fill_insert;

/// Which database a service uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`.
    pub url: String,
    /// The service's schema (PostgreSQL) or file-name suffix (SQLite): `user`, `catalog`, …
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// Who applies the service's migrations.
    pub migrate: MigrateMode,
    /// A PostgreSQL role granted, after migrating, the use of the schema and reading and
    /// writing the rows of its tables (the role the serving pods connect as).
    pub grant_to: Option<String>,
}

/// Who applies a service's migrations (`SHOP_MIGRATE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigrateMode {
    /// `auto`: the process migrates its schema at start, then serves (the default).
    #[default]
    Auto,
    /// `only`: the process migrates its schema (and grants, see [`DatabaseConfig::grant_to`]),
    /// then exits 0 without serving: a Kubernetes Job before an install or upgrade.
    Only,
    /// `skip`: the process neither creates its schema nor migrates it, so its role needs no DDL
    /// right; it refuses to start while a migration it knows is not applied.
    Skip,
}

impl MigrateMode {
    /// The variable holding the mode.
    pub const VAR: &'static str = "SHOP_MIGRATE";
    /// The variable naming the runtime role that `auto` and `only` grant row access to.
    pub const GRANT_VAR: &'static str = "SHOP_MIGRATE_GRANT_TO";

    /// `SHOP_MIGRATE` (`auto`, `only` or `skip`; `auto` when unset).
    pub fn from_env(env: &impl crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        match env.var(Self::VAR).map(|raw| raw.trim().to_ascii_lowercase()).as_deref() {
            None | Some("auto") => Ok(Self::Auto),
            Some("only") => Ok(Self::Only),
            Some("skip") => Ok(Self::Skip),
            Some(other) => Err(crate::config::ConfigError::new(
                Self::VAR,
                format!("{other:?} is not one of auto, only, skip"),
            )),
        }
    }
}

impl DatabaseConfig {
    /// The database of service `schema` at `url`, with a pool of 10, migrated at start.
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: schema.into(),
            max_connections: 10,
            migrate: MigrateMode::Auto,
            grant_to: None,
        }
    }

    /// Reads [`MigrateMode::VAR`] and [`MigrateMode::GRANT_VAR`] into this configuration.
    pub fn with_migration_settings(
        mut self,
        env: &impl crate::config::Env,
    ) -> Result<Self, crate::config::ConfigError> {
        self.migrate = MigrateMode::from_env(env)?;
        self.grant_to = env.var(MigrateMode::GRANT_VAR).map(|role| role.trim().to_owned());
        if let Some(role) = &self.grant_to {
            if self.migrate == MigrateMode::Skip {
                return Err(crate::config::ConfigError::new(
                    MigrateMode::GRANT_VAR,
                    "a process that skips migrations grants nothing: set it on the migrating one",
                ));
            }
            if role.len() > 63 || role.contains('\0') {
                return Err(crate::config::ConfigError::new(
                    MigrateMode::GRANT_VAR,
                    format!("{role:?} is not a PostgreSQL role name"),
                ));
            }
        }
        Ok(self)
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
    } else if config.migrate == MigrateMode::Skip {
        // The runtime role may not create schemas: the migration job made it.
        options.set_schema_search_path(config.schema.clone());
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
    let mut db = Database::connect(options)
        .await
        .with_context(|| format!("connecting to {}", crate::config::redact_url(&url)))?;
    pool_gauges::register(&config.schema, &db, config.max_connections);
    statement_metrics::time_statements(&config.schema, &mut db);
    Ok(db)
}

/// `db.client.operation.duration` of every statement a pool runs (see the module).
mod statement_metrics {
    use std::sync::OnceLock;

    use opentelemetry::{KeyValue, metrics::Histogram};

    use super::{DatabaseBackend, DatabaseConnection};

    /// Bucket bounds (seconds): the OpenTelemetry database conventions' advice. A statement
    /// takes well under the 5 ms the request histograms start at.
    const BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

    /// The operation names told apart; anything else (a transaction's own statements, DDL) is
    /// `OTHER`.
    const OPERATIONS: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "OTHER"];

    fn histogram() -> &'static Histogram<f64> {
        static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
        HISTOGRAM.get_or_init(|| {
            crate::telemetry::metrics::meter()
                .f64_histogram("db.client.operation.duration")
                .with_unit("s")
                .with_description("Statements a database pool ran, by operation, and how long each took.")
                .with_boundaries(BUCKETS.to_vec())
                .build()
        })
    }

    /// The index in [`OPERATIONS`] of the statement `sql`, by its first word.
    fn operation(sql: &str) -> usize {
        let word = sql
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("");
        OPERATIONS[..4]
            .iter()
            .position(|name| name.eq_ignore_ascii_case(word))
            .unwrap_or(OPERATIONS.len() - 1)
    }

    /// Times every statement of `db`, labelled with the pool `name`. The label sets are made
    /// once here: recording a statement allocates nothing.
    pub(super) fn time_statements(name: &str, db: &mut DatabaseConnection) {
        let system = match db.get_database_backend() {
            DatabaseBackend::Postgres => "postgresql",
            DatabaseBackend::Sqlite => "sqlite",
            _ => "other_sql",
        };
        let labels = |operation: &'static str, failed: bool| {
            let mut set = vec![
                KeyValue::new("db.system.name", system),
                KeyValue::new("db.client.connection.pool.name", name.to_owned()),
                KeyValue::new("db.operation.name", operation),
            ];
            if failed {
                set.push(KeyValue::new("error.type", "db_error"));
            }
            set
        };
        let ok: Vec<Vec<KeyValue>> = OPERATIONS.iter().map(|operation| labels(operation, false)).collect();
        let failed: Vec<Vec<KeyValue>> = OPERATIONS.iter().map(|operation| labels(operation, true)).collect();
        let histogram = histogram();
        db.set_metric_callback(move |info| {
            let operation = operation(&info.statement.sql);
            let labels = if info.failed {
                &failed[operation]
            } else {
                &ok[operation]
            };
            histogram.record(info.elapsed.as_secs_f64(), labels);
        });
    }

    #[cfg(test)]
    mod tests {
        use super::{OPERATIONS, operation};

        #[test]
        fn statements_are_named_by_their_first_word() {
            let name = |sql| OPERATIONS[operation(sql)];
            assert_eq!(name("SELECT 1"), "SELECT");
            assert_eq!(name("  insert INTO x VALUES (1)"), "INSERT");
            assert_eq!(name("UPDATE\"orders\" SET"), "UPDATE");
            assert_eq!(name("DELETE FROM x"), "DELETE");
            assert_eq!(name("WITH x AS (SELECT 1) SELECT * FROM x"), "OTHER");
            assert_eq!(name("CREATE TABLE x ()"), "OTHER");
            assert_eq!(name(""), "OTHER");
        }
    }
}

/// The connection pool gauges (see the module). The pools are kept by name: a service that
/// connects again replaces its old pool, and a closed pool is no longer reported.
mod pool_gauges {
    use opentelemetry::{KeyValue, metrics::ObservableGauge};
    use sea_orm::sqlx;

    use super::{BTreeMap, DatabaseBackend, DatabaseConnection, Mutex, OnceLock, PoisonError};

    enum Pool {
        Postgres(sqlx::PgPool),
        Sqlite(sqlx::SqlitePool),
    }

    impl Pool {
        /// `(open, idle)` connections, or `None` once the pool is closed.
        fn usage(&self) -> Option<(u32, u32)> {
            match self {
                Self::Postgres(pool) if !pool.is_closed() => Some((pool.size(), pool.num_idle() as u32)),
                Self::Sqlite(pool) if !pool.is_closed() => Some((pool.size(), pool.num_idle() as u32)),
                _ => None,
            }
        }
    }

    type Pools = Mutex<BTreeMap<String, (Pool, u32)>>;

    struct Gauges {
        pools: &'static Pools,
        _count: ObservableGauge<u64>,
        _max: ObservableGauge<u64>,
    }

    fn gauges() -> &'static Gauges {
        static POOLS: Pools = Mutex::new(BTreeMap::new());
        static GAUGES: OnceLock<Gauges> = OnceLock::new();
        GAUGES.get_or_init(|| {
            let meter = crate::telemetry::metrics::meter();
            let count = meter
                .u64_observable_gauge("db.client.connection.count")
                .with_unit("{connection}")
                .with_description("Connections of a database pool, by state (used, idle).")
                .with_callback(|observer| {
                    let pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
                    for (name, (pool, _)) in pools.iter() {
                        if let Some((open, idle)) = pool.usage() {
                            for (state, value) in [("used", open.saturating_sub(idle)), ("idle", idle)] {
                                observer.observe(
                                    u64::from(value),
                                    &[
                                        KeyValue::new("db.client.connection.pool.name", name.clone()),
                                        KeyValue::new("db.client.connection.state", state),
                                    ],
                                );
                            }
                        }
                    }
                })
                .build();
            let max = meter
                .u64_observable_gauge("db.client.connection.max")
                .with_unit("{connection}")
                .with_description("The most connections a database pool opens.")
                .with_callback(|observer| {
                    let pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
                    for (name, (pool, max)) in pools.iter() {
                        if pool.usage().is_some() {
                            observer.observe(
                                u64::from(*max),
                                &[KeyValue::new("db.client.connection.pool.name", name.clone())],
                            );
                        }
                    }
                })
                .build();
            Gauges {
                pools: &POOLS,
                _count: count,
                _max: max,
            }
        })
    }

    /// Reports `db`'s pool as `name`, of at most `max` connections.
    pub(super) fn register(name: &str, db: &DatabaseConnection, max: u32) {
        let pool = match db.get_database_backend() {
            DatabaseBackend::Postgres => Pool::Postgres(db.get_postgres_connection_pool().clone()),
            DatabaseBackend::Sqlite => Pool::Sqlite(db.get_sqlite_connection_pool().clone()),
            _ => return,
        };
        let gauges = gauges();
        let mut pools = gauges.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|_, (pool, _)| pool.usage().is_some());
        pools.insert(name.to_owned(), (pool, max));
    }
}

/// Rows per multi-row INSERT, for every batch writer (outbox, inbox, the stock ledger). Small on
/// purpose: PostgreSQL's time for one statement grows faster than its number of bound parameters
/// (200 outbox rows in one INSERT took over ten times as long as four INSERTs of 50), and it
/// stays far below both databases' limits on bound parameters.
pub const INSERT_CHUNK: usize = 50;

/// Inserts `rows` with multi-row statements of at most [`INSERT_CHUNK`] rows each, inside the
/// caller's transaction (pass it as `conn`): on PostgreSQL as one JSON array of rows, so that
/// the statement's text is the same for any number of rows ([`fill_insert`]).
pub async fn insert_chunked<A, C>(conn: &C, rows: impl IntoIterator<Item = A>) -> Result<(), DbErr>
where
    A: sea_orm::ActiveModelTrait,
    C: sea_orm::ConnectionTrait,
{
    insert_rows(conn, rows, None).await
}

/// [`insert_chunked`], leaving out the rows that `on_conflict` says (`DO NOTHING` on a key: a
/// row whose id exists already is skipped).
pub async fn insert_chunked_or_skip<A, C>(
    conn: &C,
    rows: impl IntoIterator<Item = A>,
    on_conflict: sea_orm::sea_query::OnConflict,
) -> Result<(), DbErr>
where
    A: sea_orm::ActiveModelTrait,
    C: sea_orm::ConnectionTrait,
{
    insert_rows(conn, rows, Some(on_conflict)).await
}

async fn insert_rows<A, C>(
    conn: &C,
    rows: impl IntoIterator<Item = A>,
    on_conflict: Option<sea_orm::sea_query::OnConflict>,
) -> Result<(), DbErr>
where
    A: sea_orm::ActiveModelTrait,
    C: sea_orm::ConnectionTrait,
{
    use sea_orm::{EntityName as _, EntityTrait as _, Iden as _};
    let rows: Vec<A> = rows.into_iter().collect();
    let entity = A::Entity::default();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let Some((columns, values)) = json_rows::model_rows(chunk) else {
            // Rows that set different columns: sea-orm fills each one's gaps with `DEFAULT`.
            let mut insert = A::Entity::insert_many(chunk.to_vec());
            if let Some(on_conflict) = &on_conflict {
                insert = insert.on_conflict(on_conflict.clone());
            }
            insert.exec_without_returning(conn).await?;
            continue;
        };
        let names: Vec<String> = columns.iter().map(|column| column.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut insert = sea_orm::sea_query::Query::insert();
        insert.into_table(entity.table_ref()).columns(columns);
        fill_insert(
            &mut insert,
            conn.get_database_backend(),
            entity.table_name(),
            &names,
            values,
        );
        if let Some(on_conflict) = &on_conflict {
            insert.on_conflict(on_conflict.clone());
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// `column` is one of `values`: on PostgreSQL `"column" = ANY($1)` with the values as one array
/// parameter, elsewhere a plain `IN` list.
///
/// Why: an `IN` list has one statement text per length, and the services' batches come in
/// every size from 1 to 50 (the orders a reservation result settles, the outbox rows a relay
/// pass marks). Each connection keeps 100 prepared statements, so under a flash sale such lists
/// were most of what PostgreSQL prepared: each preparation a round trip and a parse, each
/// evicting another cached statement. One text is prepared once per connection. SQLite
/// prepares in the process, without a round trip, and keeps the list.
pub fn one_of<C, V>(
    backend: DatabaseBackend,
    column: C,
    values: impl IntoIterator<Item = V>,
) -> sea_orm::sea_query::Expr
where
    C: sea_orm::ColumnTrait,
    V: Into<sea_orm::Value> + sea_orm::sea_query::postgres_array::NotU8,
{
    match backend {
        DatabaseBackend::Postgres => column.eq_any(values),
        _ => column.is_in(values),
    }
}

/// The names of `M`'s migrations, oldest first: what databases record in `seaql_migrations`.
/// sea-orm derives a name from its file's name, so moving a migration's file renames it, and a
/// renamed migration runs again on every existing database; each service pins its list in a test.
pub fn migration_names<M: MigratorTrait>() -> Vec<String> {
    M::migrations().iter().map(|step| step.name().to_owned()).collect()
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

/// Brings the service's schema to what the binary expects, as [`DatabaseConfig::migrate`] says:
/// migrates (and grants) for `auto` and `only`; for `skip` only checks that nothing is pending.
pub async fn prepare<M: MigratorTrait>(db: &DatabaseConnection, config: &DatabaseConfig) -> anyhow::Result<()> {
    match config.migrate {
        MigrateMode::Auto | MigrateMode::Only => {
            migrate::<M>(db, &config.schema).await?;
            if let Some(role) = &config.grant_to {
                grant_rows(db, &config.schema, role).await?;
            }
        }
        MigrateMode::Skip => {
            let pending = M::get_pending_migrations_read_only(db)
                .await
                .with_context(|| format!("reading the applied migrations of schema {}", config.schema))?;
            if !pending.is_empty() {
                let names: Vec<String> = pending.iter().map(|m| m.name().to_owned()).collect();
                anyhow::bail!(
                    "schema {} is behind this binary ({} pending: {}): with {}=skip another process \
                     must migrate first ({}=only)",
                    config.schema,
                    names.len(),
                    names.join(", "),
                    MigrateMode::VAR,
                    MigrateMode::VAR,
                );
            }
        }
    }
    Ok(())
}

/// Lets `role` use `schema` and read and write the rows of every table and sequence in it, and
/// nothing more (no DDL). On SQLite there are no roles: nothing to do.
pub async fn grant_rows(db: &DatabaseConnection, schema: &str, role: &str) -> anyhow::Result<()> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let schema = quote_ident(schema);
    let role = quote_ident(role);
    let txn = db.begin().await?;
    for statement in [
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"),
    ] {
        txn.execute_unprepared(&statement)
            .await
            .with_context(|| format!("granting row access: {statement}"))?;
    }
    txn.commit().await?;
    Ok(())
}

/// A PostgreSQL identifier in double quotes, inner quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]

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
    fn migrate_mode_comes_from_the_environment() {
        use crate::config::MapEnv;
        let config = |pairs: &[(&str, &str)]| {
            DatabaseConfig::new("postgres://h/db", "user")
                .with_migration_settings(&MapEnv::from_pairs(pairs.iter().copied()))
        };
        let unset = config(&[]).unwrap();
        assert_eq!((unset.migrate, unset.grant_to), (MigrateMode::Auto, None));
        let only = config(&[("SHOP_MIGRATE", "only"), ("SHOP_MIGRATE_GRANT_TO", "shop_app")]).unwrap();
        assert_eq!(
            (only.migrate, only.grant_to.as_deref()),
            (MigrateMode::Only, Some("shop_app"))
        );
        assert_eq!(
            config(&[("SHOP_MIGRATE", " Skip ")]).unwrap().migrate,
            MigrateMode::Skip
        );
        for bad in [
            vec![("SHOP_MIGRATE", "later")],
            vec![("SHOP_MIGRATE", "skip"), ("SHOP_MIGRATE_GRANT_TO", "shop_app")],
            vec![("SHOP_MIGRATE_GRANT_TO", "x".repeat(64).leak() as &str)],
        ] {
            let error = config(&bad).expect_err("refused");
            assert_eq!(error.key, bad.last().unwrap().0, "{bad:?}");
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("shop_app"), "\"shop_app\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(is_safe_identifier("order_v2"));
        assert!(!is_safe_identifier("x\"; drop"));
        assert!(!is_safe_identifier("1abc"));
    }
}
