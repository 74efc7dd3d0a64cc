//! Helpers for tests that run against real servers on loopback (compiled with the `testing`
//! feature only). Every test isolates itself: its own PostgreSQL database, its own queue names,
//! its own cache key prefix, so tests run in parallel.
//!
//! The servers come from the environment, with loopback defaults:
//! `SHOP_TEST_DATABASE_URL` (an admin connection to PostgreSQL), `SHOP_TEST_REDIS_URL`,
//! `SHOP_TEST_AMQP_URL`. A test that cannot reach its server fails loudly rather than skipping.
//!
//! [`service::TestService`] starts a service on such backends the way its binary does: every
//! service's integration tests go through it.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod doubles;
pub mod metrics;
pub mod pgbench;
pub mod proxy;
pub mod queues;
pub mod server;
pub mod service;
pub mod smtp;

use std::sync::LazyLock;

/// PostgreSQL admin URL used to create per-test databases (and the URLs of those databases,
/// which keep its query).
pub fn postgres_url() -> String {
    without_tls_on_loopback(&env_or(
        "SHOP_TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    ))
}

/// `url` with `sslmode=disable` when it names a loopback host and no `sslmode` of its own.
///
/// The client libraries' default (`prefer`) encrypts whenever the server offers TLS, as a
/// stock PostgreSQL package does with its snake-oil certificate. On loopback there is no wire
/// to protect, and the encryption is not free: under a flash sale it took about an eighth of
/// the shop's CPU, which the benchmarks would otherwise measure (docs/benchmarks.md). An
/// explicit `sslmode` is kept, so a run can still measure with TLS.
fn without_tls_on_loopback(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    // A URL of a scheme the `url` crate does not know keeps its host as text, IPv4 included.
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => {
            name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback || parsed.query_pairs().any(|(key, _)| key == "sslmode") {
        return url.to_owned();
    }
    parsed.query_pairs_mut().append_pair("sslmode", "disable");
    parsed.to_string()
}

/// Redis URL for tests.
pub fn redis_url() -> String {
    env_or("SHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// RabbitMQ URL for tests.
pub fn amqp_url() -> String {
    env_or("SHOP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// A mesh of made-up keys: the gateway, the three services and an operator, each trusting all
/// of them, with the standard grants. A test serves a service as its member and calls it as
/// the gateway's.
pub fn mesh() -> std::collections::BTreeMap<String, crate::grpc::mesh::MeshIdentity> {
    use crate::grpc::mesh::{CATALOG, GATEWAY, MeshIdentity, MeshSettings, OPERATOR, ORDER, USER};
    MeshIdentity::ephemeral_mesh(&[GATEWAY, USER, CATALOG, ORDER, OPERATOR], &MeshSettings::default())
        .expect("the standard names are valid")
}

/// A name nobody else uses, for a queue, a key prefix or a database: `prefix_<random>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Every queue of a whole shop named under `run` (`<run>.stock.reserve`, …,
/// `<run>.orders.placed`), with the variable that names it: what a test or tool that runs the
/// binaries on the shared broker sets, so that its runs never read each other's messages.
pub fn run_queues(run: &str) -> Vec<(&'static str, String)> {
    shop_proto::queues::defaults()
        .into_iter()
        .map(|(variable, name)| (variable, format!("{run}.{name}")))
        .collect()
}

/// Creates an empty PostgreSQL database with a unique name and returns its URL. Databases are
/// left behind for post-mortems; `.ci/run` drops the `shop_test_%` ones before each run.
pub async fn create_postgres_database() -> String {
    use sea_orm::ConnectionTrait as _;
    let admin_url = postgres_url();
    let admin = sea_orm::Database::connect(admin_url.as_str())
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL at {admin_url} must answer: {error}"));
    let name = unique_name("shop_test");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|error| panic!("creating test database {name}: {error}"));
    admin.close().await.ok();
    let mut url = url::Url::parse(&admin_url).unwrap_or_else(|error| panic!("bad PostgreSQL URL: {error}"));
    url.set_path(&name);
    url.to_string()
}

/// The database a PostgreSQL URL names (its path, without the query).
pub fn database_name(url: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let parsed = url::Url::parse(url).context("bad PostgreSQL URL")?;
    Ok(parsed.path().trim_start_matches('/').to_owned())
}

/// Drops a database [`create_postgres_database`] made (its URL), closing the connections still
/// open to it; refuses any other database.
pub async fn drop_postgres_database(url: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use sea_orm::ConnectionTrait as _;
    let name = database_name(url)?;
    let ours = name
        .strip_prefix("shop_test_")
        .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    anyhow::ensure!(ours, "{name:?} is not a database made by create_postgres_database");
    let admin = sea_orm::Database::connect(postgres_url().as_str()).await?;
    let dropped = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    admin.close().await.ok();
    dropped.with_context(|| format!("dropping {name}"))?;
    Ok(())
}

/// Deletes `queues` and their dead-letter queues from the test broker, best effort and bounded.
/// Every test declares its own queues, and idle quorum queues hold the broker's file handles:
/// left behind by every run, they exhaust them.
pub async fn delete_queues(queues: &[String]) {
    use std::time::Duration;

    let url = amqp_url();
    let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
    let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(10), connect).await else {
        return;
    };
    // Every wait on the broker is bounded: a broker slow to answer a channel or a close (seen
    // once in CI) must cost a test a few seconds, not its whole time limit.
    if let Ok(Ok(channel)) = tokio::time::timeout(Duration::from_secs(5), connection.create_channel()).await {
        for queue in queues {
            for name in [queue.clone(), crate::queue::dead_letter_queue_name(queue)] {
                let delete = channel.queue_delete(name.as_str().into(), Default::default());
                let _ = tokio::time::timeout(Duration::from_secs(5), delete).await;
            }
        }
    }
    let close = connection.close(200, "test done".into());
    let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
}

/// [`delete_queues`] for a `Drop` implementation, which cannot await: on a thread with a
/// runtime of its own.
pub fn delete_queues_blocking(queues: Vec<String>) {
    let _ = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            runtime.block_on(delete_queues(&queues));
        }
    })
    .join();
}

/// Initialises logging once per test binary; shown only with `TEST_LOG=1`.
pub fn init_test_logging() {
    static INIT: LazyLock<()> = LazyLock::new(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
    LazyLock::force(&INIT);
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait as _;

    use super::*;

    #[test]
    fn loopback_urls_go_without_tls_unless_they_say_otherwise() {
        assert_eq!(
            without_tls_on_loopback("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
        );
        assert_eq!(
            without_tls_on_loopback("postgres://u:p@localhost/db?application_name=t"),
            "postgres://u:p@localhost/db?application_name=t&sslmode=disable"
        );
        assert_eq!(
            without_tls_on_loopback("postgres://postgres@[::1]/postgres"),
            "postgres://postgres@[::1]/postgres?sslmode=disable"
        );
        for kept in [
            "postgres://postgres@127.0.0.1/postgres?sslmode=require",
            "postgres://postgres@db.internal:5432/postgres",
            "postgres://postgres@10.0.0.5/postgres",
        ] {
            assert_eq!(without_tls_on_loopback(kept), kept);
        }
    }

    #[tokio::test]
    async fn test_databases_are_reached_without_tls_on_loopback() {
        let url = create_postgres_database().await;
        let db = sea_orm::Database::connect(url.as_str()).await.unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ))
            .await
            .unwrap()
            .unwrap();
        let encrypted: bool = row.try_get("", "ssl").unwrap();
        db.close().await.ok();
        drop_postgres_database(&url).await.unwrap();
        assert!(!encrypted, "{url} was reached over TLS");
    }

    async fn exists(name: &str) -> bool {
        let admin = sea_orm::Database::connect(postgres_url().as_str()).await.unwrap();
        let sql = format!("SELECT 1 FROM pg_database WHERE datname = '{name}'");
        let found = admin
            .query_one_raw(sea_orm::Statement::from_string(admin.get_database_backend(), sql))
            .await
            .unwrap();
        admin.close().await.ok();
        found.is_some()
    }

    #[tokio::test]
    async fn a_test_database_is_dropped_even_while_connected_and_no_other_one_is() {
        let url = create_postgres_database().await;
        let name = url::Url::parse(&url).unwrap().path().trim_start_matches('/').to_owned();
        let held = sea_orm::Database::connect(url.as_str()).await.unwrap();
        assert!(exists(&name).await);
        drop_postgres_database(&url).await.unwrap();
        assert!(!exists(&name).await);
        drop(held);
        let error = drop_postgres_database(&postgres_url()).await.unwrap_err();
        assert!(error.to_string().contains("not a database made by"), "{error}");
        assert!(exists("postgres").await);
    }
}
