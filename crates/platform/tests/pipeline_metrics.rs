//! The pipeline's metrics, read from a real `GET /metrics` scrape: the outbox backlog
//! (PostgreSQL), the depth of a consumed queue and the consumer's handling of each delivery
//! (RabbitMQ), and the database pools. Each test runs in a process of its own (nextest), so
//! it installs the meter provider before anything makes an instrument.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, TransactionTrait as _};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use shop_platform::{
    db::{self, DatabaseConfig},
    fault::Unavailable,
    outbox::{self, CreateMessagingTables, OutboxGauge, OutboxRelay, RelayOptions},
    queue::{
        MemoryQueue, Message, QueueDepthGauge, QueueSpec, WorkQueue,
        runner::{ConsumerRunner, Handler, Poison, Received, RunnerOptions},
    },
    testing::{self, metrics::Scraper, queues},
};
use tokio_util::sync::CancellationToken;

const TEST_LIMIT: Duration = Duration::from_secs(30);

struct Migrator;

#[async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateMessagingTables)]
    }
}

async fn postgres(schema: &str, max_connections: u32) -> DatabaseConnection {
    testing::init_test_logging();
    let config = DatabaseConfig {
        max_connections,
        ..DatabaseConfig::new(testing::create_postgres_database().await, schema)
    };
    let db = db::connect(&config).await.unwrap();
    db::migrate::<Migrator>(&db, &config.schema).await.unwrap();
    db
}

#[tokio::test]
async fn the_outbox_gauges_report_the_unsent_rows_and_how_long_the_oldest_waited() {
    let metrics = Scraper::install();
    let db = postgres("outboxgauge", 4).await;
    let gauge = OutboxGauge::new(db.clone(), "order");
    let labels = ["shop_outbox=\"order\""];
    gauge.poll().await.unwrap();
    assert_eq!(metrics.value("shop_outbox_pending", &labels).await, Some(0.0));
    assert_eq!(
        metrics.value("shop_outbox_oldest_age_seconds", &labels).await,
        Some(0.0)
    );

    let txn = db.begin().await.unwrap();
    for _ in 0..3 {
        outbox::enqueue(&txn, "stock.reserve", "test.Kind", b"x".to_vec())
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gauge.poll().await.unwrap();
    assert_eq!(metrics.value("shop_outbox_pending", &labels).await, Some(3.0));
    let age = metrics.value("shop_outbox_oldest_age_seconds", &labels).await.unwrap();
    assert!((0.3..60.0).contains(&age), "the oldest row waited {age} s");

    let queue = MemoryQueue::new();
    queue.declare(&QueueSpec::new("stock.reserve")).await.unwrap();
    let relay = OutboxRelay::new(db.clone(), Arc::new(queue), RelayOptions::default());
    assert_eq!(relay.relay_once().await.unwrap(), 3);
    gauge.poll().await.unwrap();
    assert_eq!(metrics.value("shop_outbox_pending", &labels).await, Some(0.0));
    assert_eq!(
        metrics.value("shop_outbox_oldest_age_seconds", &labels).await,
        Some(0.0)
    );
}

#[tokio::test]
async fn the_database_pools_report_used_idle_and_max_connections() {
    let metrics = Scraper::install();
    let db = postgres("pooltest", 3).await;
    let pool = "db_client_connection_pool_name=\"pooltest\"";
    assert_eq!(metrics.value("db_client_connection_max", &[pool]).await, Some(3.0));

    let held = db.begin().await.unwrap();
    held.execute_unprepared("SELECT 1").await.unwrap();
    let used = ["db_client_connection_state=\"used\"", pool];
    assert_eq!(metrics.value("db_client_connection_count", &used).await, Some(1.0));
    held.commit().await.unwrap();
    // The pool takes the connection back in the background.
    metrics
        .wait_for("db_client_connection_count", &used, |value| value == 0.0)
        .await;
    let idle = ["db_client_connection_state=\"idle\"", pool];
    let idle = metrics.value("db_client_connection_count", &idle).await.unwrap();
    assert!((1.0..=3.0).contains(&idle), "{idle} idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_depth_of_a_consumed_queue_counts_its_ready_messages() {
    let metrics = Arc::new(Scraper::install());
    queues::run_on_rabbitmq(TEST_LIMIT, move |queue| async move {
        let spec = queues::declare_own(&queue, "depth", 5).await;
        let gauge = QueueDepthGauge::new(Arc::clone(&queue), [spec.name.clone()]);
        let labels = format!("messaging_destination_name=\"{}\"", spec.name);
        gauge.poll().await.unwrap();
        assert_eq!(metrics.value("messaging_queue_depth", &[&labels]).await, Some(0.0));

        let messages = (0..3).map(|n| message(&format!("m-{n}"))).collect();
        queue.publish(&spec.name, messages).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            gauge.poll().await.unwrap();
            if metrics.value("messaging_queue_depth", &[&labels]).await == Some(3.0) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the depth never reached 3");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handled_delivery_is_timed_by_outcome_and_the_counters_start_at_zero() {
    let metrics = Arc::new(Scraper::install());
    queues::run_on_rabbitmq(TEST_LIMIT, move |queue| async move {
        // Two deliveries each: a message that keeps failing is dead-lettered by the broker.
        let spec = queues::declare_own(&queue, "timed", 2).await;
        let options = RunnerOptions {
            first_pause: Duration::from_millis(10),
            max_pause: Duration::from_millis(50),
            ..RunnerOptions::default()
        };
        let handler = Arc::new(Scripted::default());
        let runner = ConsumerRunner::new(Arc::clone(&queue), spec.name.clone(), handler, options);
        let stop = CancellationToken::new();
        let running = tokio::spawn(runner.run(stop.clone()));

        let queue_label = format!("messaging_destination_name=\"{}\"", spec.name);
        let queue_label = queue_label.as_str();
        for (metric, label) in [
            ("messaging_process_retries_total", "kind=\"transient\""),
            ("messaging_process_retries_total", "kind=\"failed\""),
            ("messaging_process_dead_lettered_total", "reason=\"unexpected_type\""),
        ] {
            let value = metrics.wait_for(metric, &[queue_label, label], |_| true).await;
            assert_eq!(value, 0.0, "{metric} {label} starts at 0");
        }

        let mut poison = message("poison");
        poison.kind = "not.a.Kind".to_owned();
        let batch = vec![
            message("ok-1"),
            poison,
            message("fail-1"),
            message("flaky-1"),
            message("ok-2"),
        ];
        queue.publish(&spec.name, batch).await.unwrap();

        let count = "messaging_process_duration_seconds_count";
        for (outcome, expected) in [("ok", 3.0), ("dead_lettered", 1.0), ("retried", 2.0)] {
            let outcome = format!("outcome=\"{outcome}\"");
            metrics
                .wait_for(count, &[queue_label, &outcome], |value| value == expected)
                .await;
        }
        let slowest = ["le=\"+Inf\"", queue_label, "outcome=\"ok\""];
        assert_eq!(
            metrics
                .value("messaging_process_duration_seconds_bucket", &slowest)
                .await,
            Some(3.0)
        );
        let transient = [queue_label, "kind=\"transient\""];
        assert_eq!(
            metrics.value("messaging_process_retries_total", &transient).await,
            Some(1.0)
        );
        let poisoned = [queue_label, "reason=\"unexpected_type\""];
        assert_eq!(
            metrics.value("messaging_process_dead_lettered_total", &poisoned).await,
            Some(1.0)
        );
        stop.cancel();
        running.await.unwrap();
    })
    .await;
}

const KIND: &str = "test.Kind";

fn message(id: &str) -> Message {
    Message {
        id: id.to_owned(),
        kind: KIND.to_owned(),
        payload: id.as_bytes().to_vec(),
        headers: BTreeMap::new(),
    }
}

/// Applies `ok-*`, always fails `fail-*`, fails `flaky-*` once as an outage; refuses any
/// other kind of message as poison.
#[derive(Debug, Default)]
struct Scripted {
    flaked: Mutex<bool>,
}

#[async_trait]
impl Handler for Scripted {
    type Item = ();

    fn decode(&self, message: &Message) -> Result<(), Poison> {
        if message.kind == KIND {
            Ok(())
        } else {
            Err(Poison::new("unexpected_type", format!("kind {}", message.kind)))
        }
    }

    async fn apply(&self, items: &[Received<'_, ()>]) -> anyhow::Result<()> {
        for item in items {
            if item.message_id.starts_with("fail") {
                anyhow::bail!("{} never applies", item.message_id);
            }
            if item.message_id.starts_with("flaky") {
                let mut flaked = self.flaked.lock().unwrap();
                if !std::mem::replace(&mut *flaked, true) {
                    return Err(Unavailable("the database is down".into()).into());
                }
            }
        }
        Ok(())
    }

    fn poison_reasons(&self) -> &'static [&'static str] {
        &["unexpected_type"]
    }
}
