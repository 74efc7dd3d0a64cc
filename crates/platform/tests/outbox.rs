//! The outbox and inbox on real PostgreSQL (and the embedded SQLite), with the in-process queue
//! for ordering and failure injection and real RabbitMQ for broker connection loss.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use shop_platform::{
    db::{self, DatabaseConfig},
    outbox::{self, CreateMessagingTables, OutboxRelay, RelayOptions, inbox},
    queue::{Consumer, MemoryQueue, Message, QueueError, QueueSpec, WorkQueue, bundle},
    testing,
};
use tokio_util::sync::CancellationToken;

struct Migrator;

#[async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateMessagingTables)]
    }
}

async fn postgres() -> (DatabaseConfig, DatabaseConnection) {
    testing::init_test_logging();
    let config = DatabaseConfig::new(testing::create_postgres_database().await, "relaytest");
    let db = db::connect(&config).await.unwrap();
    db::migrate::<Migrator>(&db, &config.schema).await.unwrap();
    (config, db)
}

async fn sqlite() -> (DatabaseConfig, DatabaseConnection, tempfile::TempDir) {
    testing::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::new(format!("sqlite://{}/shop.db", dir.path().display()), "relaytest");
    let db = db::connect(&config).await.unwrap();
    db::migrate::<Migrator>(&db, &config.schema).await.unwrap();
    (config, db, dir)
}

async fn memory_queue(name: &str) -> Arc<dyn WorkQueue> {
    let queue = MemoryQueue::new();
    queue.declare(&QueueSpec::new(name)).await.unwrap();
    Arc::new(queue)
}

/// Enqueues `count` messages, one transaction each, and returns their ids in order.
async fn enqueue(db: &DatabaseConnection, queue: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let txn = db.begin().await.unwrap();
        let id = outbox::enqueue(&txn, queue, "test.Event", format!("event {n}").into_bytes())
            .await
            .unwrap();
        txn.commit().await.unwrap();
        ids.push(id.to_string());
    }
    ids
}

/// Receives until `expected` distinct ids arrived (acking each delivery, opening bundles), or
/// fails after `wait`.
async fn receive_ids(consumer: &mut Box<dyn Consumer>, expected: usize, wait: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    let mut distinct = HashSet::new();
    tokio::time::timeout(wait, async {
        while distinct.len() < expected {
            let delivery = consumer.next().await.unwrap();
            for message in bundle::unbundle(delivery.message.clone()).unwrap() {
                distinct.insert(message.id.clone());
                ids.push(message.id);
            }
            delivery.ack().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {expected} messages arrived", distinct.len()));
    ids
}

async fn unsent(db: &DatabaseConnection) -> u64 {
    use sea_orm::{ColumnTrait, QueryFilter};
    outbox::entity::Entity::find()
        .filter(outbox::entity::Column::PublishedAt.is_null())
        .count(db)
        .await
        .unwrap()
}

async fn crash_after_commit_is_published_by_the_next_relay(config: DatabaseConfig, db: DatabaseConnection) {
    let name = testing::unique_name("crash");
    let queue = memory_queue(&name).await;
    let ids = enqueue(&db, &name, 3).await;
    // The process dies here: committed, never published. A new process starts.
    db.close().await.unwrap();
    let db = db::connect(&config).await.unwrap();
    assert_eq!(unsent(&db).await, 3);

    let relay = OutboxRelay::new(db.clone(), Arc::clone(&queue), RelayOptions::default());
    assert_eq!(relay.relay_once().await.unwrap(), 3);
    assert_eq!(relay.relay_once().await.unwrap(), 0, "sent rows are not sent again");
    assert_eq!(unsent(&db).await, 0);

    let mut consumer = queue.consume(&name, 10).await.unwrap();
    let received = receive_ids(&mut consumer, 3, Duration::from_secs(5)).await;
    assert_eq!(received, ids, "published once each, in order");
}

#[tokio::test]
async fn postgres_crash_after_commit_is_published_by_the_next_relay() {
    let (config, db) = postgres().await;
    crash_after_commit_is_published_by_the_next_relay(config, db).await;
}

#[tokio::test]
async fn sqlite_crash_after_commit_is_published_by_the_next_relay() {
    let (config, db, _dir) = sqlite().await;
    crash_after_commit_is_published_by_the_next_relay(config, db).await;
}

#[tokio::test]
async fn a_row_committed_behind_the_relays_cursor_goes_out_at_the_next_rescan() {
    let (_config, db) = postgres().await;
    let name = testing::unique_name("late");
    let queue = memory_queue(&name).await;
    let relay = OutboxRelay::new(db.clone(), Arc::clone(&queue), RelayOptions::default());

    // A transaction takes its row's place in the outbox, then waits while a later one commits
    // and is relayed: the relay's cursor moves past the waiting row.
    let slow = db.begin().await.unwrap();
    let late = outbox::enqueue(&slow, &name, "test.Event", b"late".to_vec())
        .await
        .unwrap()
        .to_string();
    let early = enqueue(&db, &name, 1).await;
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    slow.commit().await.unwrap();

    // Passes read on from the last row sent, not through everything behind it again...
    assert_eq!(relay.relay_once().await.unwrap(), 0, "a pass reads from its cursor");
    assert_eq!(unsent(&db).await, 1);
    // ...and from the start once a rescan is due: the late row goes out then.
    tokio::time::sleep(outbox::relay::RESCAN_INTERVAL).await;
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(unsent(&db).await, 0);

    let mut consumer = queue.consume(&name, 10).await.unwrap();
    let received = receive_ids(&mut consumer, 2, Duration::from_secs(5)).await;
    assert_eq!(received, [early[0].clone(), late]);
}

#[tokio::test]
async fn the_rows_of_a_pass_for_one_queue_go_out_in_bundles() {
    let (_, db) = postgres().await;
    let name = testing::unique_name("bundles");
    let queue = memory_queue(&name).await;
    let ids = enqueue(&db, &name, 5).await;
    let relay = OutboxRelay::new(
        db.clone(),
        Arc::clone(&queue),
        RelayOptions {
            bundle_size: 2,
            ..RelayOptions::default()
        },
    );
    assert_eq!(relay.relay_once().await.unwrap(), 5, "five rows sent");

    // Three broker messages: two bundles of two, then the last row alone, in order.
    let mut consumer = queue.consume(&name, 10).await.unwrap();
    let mut carried = Vec::new();
    for _ in 0..3 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
            .unwrap();
        let messages = bundle::unbundle(delivery.message.clone()).unwrap();
        assert_eq!(bundle::is_bundle(&delivery.message), messages.len() > 1);
        for message in &messages {
            assert_eq!(message.kind, "test.Event", "each message keeps its own type");
            let n = ids.iter().position(|id| *id == message.id).unwrap();
            assert_eq!(
                message.payload,
                format!("event {n}").into_bytes(),
                "and its own payload"
            );
        }
        carried.push(messages.iter().map(|message| message.id.clone()).collect::<Vec<_>>());
        delivery.ack().await.unwrap();
    }
    assert_eq!(carried, [&ids[0..2], &ids[2..4], &ids[4..5]]);
    let last = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(last.is_err(), "nothing more: {last:?}");
}

#[tokio::test]
async fn a_rolled_back_transaction_publishes_nothing() {
    let (_, db) = postgres().await;
    let name = testing::unique_name("rollback");
    let queue = memory_queue(&name).await;
    let txn = db.begin().await.unwrap();
    outbox::enqueue(&txn, &name, "test.Event", b"never".to_vec())
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    let relay = OutboxRelay::new(db, queue, RelayOptions::default());
    assert_eq!(relay.relay_once().await.unwrap(), 0);
}

/// A broker that stores the messages and then "loses" the confirm the first time: the process
/// dies after publishing and before marking the rows sent.
#[derive(Debug)]
struct LosesFirstConfirm {
    inner: Arc<dyn WorkQueue>,
    publishes: AtomicUsize,
}

#[async_trait]
impl WorkQueue for LosesFirstConfirm {
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        self.inner.declare(spec).await
    }
    async fn publish(&self, queue: &str, messages: Vec<Message>) -> Result<(), QueueError> {
        self.inner.publish(queue, messages).await?;
        if self.publishes.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(QueueError::Unavailable("connection lost before the confirm".into()));
        }
        Ok(())
    }
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.inner.consume(queue, prefetch).await
    }
    async fn ready(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_republished_message_is_applied_once_by_an_inbox_consumer() {
    let (_, db) = postgres().await;
    let name = testing::unique_name("dup");
    let inner = memory_queue(&name).await;
    let queue = Arc::new(LosesFirstConfirm {
        inner: Arc::clone(&inner),
        publishes: AtomicUsize::new(0),
    });
    let ids = enqueue(&db, &name, 5).await;

    let relay = OutboxRelay::new(db.clone(), queue, RelayOptions::default());
    assert!(relay.relay_once().await.is_err(), "the lost confirm fails the pass");
    assert_eq!(unsent(&db).await, 5, "nothing was marked sent");
    assert_eq!(relay.relay_once().await.unwrap(), 5, "so every row goes out again");

    // The consumer sees every message twice, and applies each once.
    db.execute_unprepared("CREATE TABLE effects (message_id text NOT NULL)")
        .await
        .unwrap();
    let mut consumer = inner.consume(&name, 20).await.unwrap();
    let mut received = 0;
    while received < 10 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
            .unwrap();
        for message in bundle::unbundle(delivery.message.clone()).unwrap() {
            let txn = db.begin().await.unwrap();
            if inbox::first_delivery(&txn, &message.id).await.unwrap() {
                txn.execute_unprepared(&format!("INSERT INTO effects VALUES ('{}')", message.id))
                    .await
                    .unwrap();
            }
            txn.commit().await.unwrap();
            received += 1;
        }
        delivery.ack().await.unwrap();
    }
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT message_id FROM effects ORDER BY message_id",
        ))
        .await
        .unwrap();
    let mut applied: Vec<String> = rows.iter().map(|row| row.try_get("", "message_id").unwrap()).collect();
    let mut expected = ids;
    applied.sort();
    expected.sort();
    assert_eq!(applied, expected, "each message applied exactly once");
}

#[tokio::test]
async fn two_relay_replicas_publish_every_row_once_and_in_order() {
    let (_, db) = postgres().await;
    let name = testing::unique_name("replicas");
    let queue = memory_queue(&name).await;
    let ids = enqueue(&db, &name, 400).await;

    let options = RelayOptions {
        batch_size: 25,
        ..RelayOptions::default()
    };
    let shutdown = CancellationToken::new();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let relay = OutboxRelay::new(db.clone(), Arc::clone(&queue), options.clone());
            tokio::spawn(relay.run(shutdown.clone()))
        })
        .collect();
    let mut consumer = queue.consume(&name, 100).await.unwrap();
    let received = receive_ids(&mut consumer, 400, Duration::from_secs(20)).await;
    shutdown.cancel();
    for replica in replicas {
        replica.await.unwrap();
    }
    assert_eq!(received.len(), 400, "no row published twice");
    assert_eq!(received, ids, "in insertion order");
    assert_eq!(unsent(&db).await, 0);
}

#[tokio::test]
async fn broker_connection_loss_under_the_relay_loses_nothing() {
    let (_, db) = postgres().await;
    let name = testing::unique_name("outbox_amqp");
    let (proxy, via_proxy) = testing::proxy::FaultProxy::in_front_of(&testing::amqp_url(), 5672).await;
    let publisher = shop_platform::queue::from_url(via_proxy.as_str()).await.unwrap();
    publisher.declare(&QueueSpec::new(&name)).await.unwrap();
    let direct = shop_platform::queue::from_url(&testing::amqp_url()).await.unwrap();

    let relay = OutboxRelay::new(
        db.clone(),
        publisher,
        RelayOptions {
            batch_size: 20,
            poll_interval: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..RelayOptions::default()
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.clone().run(shutdown.clone()));

    let mut ids = Vec::new();
    for round in 0..5 {
        ids.extend(enqueue(&db, &name, 40).await);
        relay.wake();
        tokio::time::sleep(Duration::from_millis(30 * round)).await;
        proxy.sever_all();
    }
    let mut consumer = direct.consume(&name, 200).await.unwrap();
    let received = receive_ids(&mut consumer, ids.len(), Duration::from_secs(30)).await;
    let distinct: HashSet<_> = received.iter().collect();
    assert!(
        ids.iter().all(|id| distinct.contains(id)),
        "every row reached the broker"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while unsent(&db).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every row is eventually marked sent");
    shutdown.cancel();
    running.await.unwrap();
    testing::delete_queues(&[name]).await;
}

/// How many INSERTs into `table` the connection of `txn` has prepared.
async fn prepared_inserts(txn: &sea_orm::DatabaseTransaction, table: &str) -> usize {
    prepared_statements(txn, &format!("INSERT INTO \"{table}\"%"))
        .await
        .len()
}

/// The statements this connection has prepared whose text is `LIKE` `pattern`.
async fn prepared_statements(txn: &sea_orm::DatabaseTransaction, pattern: &str) -> Vec<String> {
    txn.query_all_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT statement FROM pg_prepared_statements WHERE statement LIKE $1",
        [pattern.into()],
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "statement").unwrap())
    .collect()
}

/// Batches of any size are one statement text on PostgreSQL, so a connection prepares it once
/// (a `VALUES` list has one text per row count: three here), and the rows read back exactly.
#[tokio::test]
async fn rows_of_any_batch_size_share_one_prepared_insert_and_read_back_exactly() {
    use sea_orm::QueryOrder as _;
    let (config, db) = postgres().await;
    let txn = db.begin().await.unwrap();
    let mut sent = Vec::new();
    for (batch, size) in [1_usize, 7, 23].into_iter().enumerate() {
        let messages: Vec<outbox::OutboxMessage> = (0..size)
            .map(|n| {
                let mut message = outbox::OutboxMessage::new(
                    "q.rows",
                    "test.Rows",
                    vec![0, 255, 10, 92, 120, u8::try_from(n).unwrap()],
                );
                message
                    .headers
                    .insert("note".into(), format!("batch {batch} «{n}» \"quoted\" \\ back"));
                message
            })
            .collect();
        let ids = outbox::enqueue_many(&txn, messages.clone()).await.unwrap();
        sent.extend(ids.into_iter().zip(messages));
    }
    let prepared = prepared_inserts(&txn, "outbox").await;
    assert_eq!(prepared, 1, "one INSERT text for batches of 1, 7 and 23 rows");
    let rows = outbox::entity::Entity::find()
        .order_by_asc(outbox::entity::Column::Seq)
        .all(&txn)
        .await
        .unwrap();
    assert_eq!(rows.len(), sent.len());
    for (row, (id, message)) in rows.iter().zip(&sent) {
        assert_eq!(row.id, *id);
        assert_eq!((row.destination.as_str(), row.kind.as_str()), ("q.rows", "test.Rows"));
        assert_eq!(row.payload, message.payload);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row.headers).unwrap(),
            serde_json::to_value(&message.headers).unwrap()
        );
        assert_eq!(row.published_at, None);
        assert_eq!(
            row.created_at.timestamp_subsec_nanos() % 1_000,
            0,
            "microseconds, as PostgreSQL keeps them"
        );
    }
    txn.rollback().await.unwrap();
    testing::drop_postgres_database(&config.url).await.unwrap();
}

/// The inbox's claims too are one statement text whatever their number of ids, and still claim
/// each id once.
#[tokio::test]
async fn inbox_claims_of_any_size_share_one_prepared_insert() {
    let (config, db) = postgres().await;
    let txn = db.begin().await.unwrap();
    let batches: Vec<Vec<String>> = [1_usize, 5, 17]
        .into_iter()
        .enumerate()
        .map(|(batch, size)| (0..size).map(|n| format!("message-{batch}-{n}")).collect())
        .collect();
    for ids in &batches {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let claimed = inbox::claim(&txn, &ids).await.unwrap();
        assert_eq!(claimed.len(), ids.len(), "every id is new");
        assert!(inbox::claim(&txn, &ids).await.unwrap().is_empty(), "claimed once");
    }
    let prepared = prepared_inserts(&txn, "inbox").await;
    assert_eq!(prepared, 1, "one INSERT text for claims of 1, 5 and 17 ids");
    txn.rollback().await.unwrap();
    testing::drop_postgres_database(&config.url).await.unwrap();
}

/// The sequences of the outbox rows that `filter` keeps, in order.
async fn sequences(txn: &sea_orm::DatabaseTransaction, filter: sea_orm::Condition) -> Vec<i64> {
    use sea_orm::{QueryFilter as _, QueryOrder as _};
    outbox::entity::Entity::find()
        .filter(filter)
        .order_by_asc(outbox::entity::Column::Seq)
        .all(txn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.seq)
        .collect()
}

/// A membership test (`db::one_of`, as the relay marks the rows of a pass sent) is one statement
/// text whatever the number of values on PostgreSQL, so a connection prepares it once (an `IN`
/// list has one text per length: three here), and both databases find the same rows.
#[tokio::test]
async fn membership_of_any_size_shares_one_prepared_statement() {
    let (config, postgres) = postgres().await;
    let (_, sqlite, _dir) = sqlite().await;
    for db in [&postgres, &sqlite] {
        enqueue(db, "q.members", 30).await;
        let txn = db.begin().await.unwrap();
        let all = sequences(&txn, sea_orm::Condition::all()).await;
        for size in [1, 7, 13] {
            let wanted: Vec<i64> = all.iter().copied().step_by(2).take(size).collect();
            let backend = txn.get_database_backend();
            let found = sequences(
                &txn,
                sea_orm::Condition::all().add(db::one_of(backend, outbox::entity::Column::Seq, wanted.clone())),
            )
            .await;
            assert_eq!(found, wanted, "{:?}", txn.get_database_backend());
        }
        if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let prepared = prepared_statements(&txn, r#"SELECT "outbox".% WHERE "outbox"."seq"%"#).await;
            assert_eq!(prepared.len(), 1, "one text for 1, 7 and 13 values: {prepared:#?}");
        }
        txn.rollback().await.unwrap();
    }
    testing::drop_postgres_database(&config.url).await.unwrap();
}

/// Rows inserted with an `ON CONFLICT … DO NOTHING` (`db::insert_chunked_or_skip`, as the
/// order service records payment tasks) skip those whose key exists and keep the others, on
/// both databases, in one statement text whatever their number on PostgreSQL.
#[tokio::test]
async fn rows_inserted_or_skipped_keep_the_first_and_share_one_prepared_insert() {
    use sea_orm::{ActiveValue::Set, QueryOrder as _};
    let (config, postgres) = postgres().await;
    let (_, sqlite, _dir) = sqlite().await;
    let row = |seq: i64, batch: &str| outbox::entity::ActiveModel {
        seq: Set(seq),
        id: Set(uuid::Uuid::new_v4()),
        destination: Set("q.skip".into()),
        kind: Set(batch.into()),
        payload: Set(vec![u8::try_from(seq).unwrap()]),
        headers: Set("{}".into()),
        created_at: Set(chrono::Utc::now()),
        published_at: Set(None),
    };
    for db in [&postgres, &sqlite] {
        let txn = db.begin().await.unwrap();
        let conflict = || {
            sea_orm::sea_query::OnConflict::column(outbox::entity::Column::Seq)
                .do_nothing()
                .to_owned()
        };
        db::insert_chunked_or_skip(&txn, (1..=4).map(|seq| row(seq, "first")), conflict())
            .await
            .unwrap();
        db::insert_chunked_or_skip(&txn, (3..=10).map(|seq| row(seq, "second")), conflict())
            .await
            .unwrap();
        let rows: Vec<(i64, String)> = outbox::entity::Entity::find()
            .order_by_asc(outbox::entity::Column::Seq)
            .all(&txn)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.seq, row.kind))
            .collect();
        let expected: Vec<(i64, String)> = (1..=10)
            .map(|seq| (seq, if seq <= 4 { "first" } else { "second" }.to_owned()))
            .collect();
        assert_eq!(rows, expected, "{:?}", txn.get_database_backend());
        if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            assert_eq!(
                prepared_inserts(&txn, "outbox").await,
                1,
                "one INSERT text for 4 and 8 rows"
            );
        }
        txn.rollback().await.unwrap();
    }
    testing::drop_postgres_database(&config.url).await.unwrap();
}
