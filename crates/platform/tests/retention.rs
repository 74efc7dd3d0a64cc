//! Retention on real PostgreSQL and SQLite: the sweeper deletes published outbox rows and inbox
//! ids older than their age, keeps the younger ones and the unsent ones, and two sweepers
//! racing each other delete every row once between them without an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::{Expr, ExprTrait as _, Query},
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use shop_platform::{
    db::{self, DatabaseConfig},
    outbox::{self, CreateMessagingTables, IndexInboxByAge, entity, inbox},
    retention::{RetentionSettings, Sweeper, Swept, messaging_rules},
    testing,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86_400);

struct Migrator;

#[async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateMessagingTables), Box::new(IndexInboxByAge)]
    }
}

async fn connect(config: &DatabaseConfig) -> DatabaseConnection {
    let db = db::connect(config).await.unwrap();
    db::migrate::<Migrator>(&db, &config.schema).await.unwrap();
    db
}

async fn postgres() -> DatabaseConfig {
    testing::init_test_logging();
    DatabaseConfig::new(testing::create_postgres_database().await, "retentiontest")
}

fn sqlite(dir: &tempfile::TempDir) -> DatabaseConfig {
    testing::init_test_logging();
    DatabaseConfig::new(format!("sqlite://{}/shop.db", dir.path().display()), "retentiontest")
}

fn ago(age: Duration) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(age).unwrap()
}

/// Writes `count` outbox rows and marks them published at `published_at` (or leaves them
/// unsent); returns their ids.
async fn outbox_rows(db: &DatabaseConnection, count: usize, published_at: Option<DateTime<Utc>>) -> Vec<Uuid> {
    let messages = (0..count)
        .map(|n| outbox::OutboxMessage::new("q", "test.Event", vec![n as u8]))
        .collect();
    let ids = outbox::enqueue_many(db, messages).await.unwrap();
    entity::Entity::update_many()
        .col_expr(entity::Column::PublishedAt, Expr::value(published_at))
        // Unsent rows are old too: age alone must not delete them.
        .col_expr(entity::Column::CreatedAt, Expr::value(ago(30 * DAY)))
        .filter(entity::Column::Id.is_in(ids.clone()))
        .exec(db)
        .await
        .unwrap();
    ids
}

/// Records `count` inbox ids processed at `processed_at`; returns them.
async fn inbox_ids(db: &DatabaseConnection, count: usize, processed_at: DateTime<Utc>) -> Vec<String> {
    let ids: Vec<String> = (0..count).map(|_| Uuid::new_v4().to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    for chunk in refs.chunks(500) {
        assert_eq!(inbox::claim(db, chunk).await.unwrap().len(), chunk.len());
    }
    let update = Query::update()
        .table("inbox")
        .value("processed_at", processed_at)
        .and_where(Expr::col("message_id").is_in(ids.clone()))
        .to_owned();
    db.execute(&update).await.unwrap();
    ids
}

async fn inbox_has(db: &DatabaseConnection, id: &str) -> bool {
    let query = Query::select()
        .expr(Expr::col("message_id"))
        .from("inbox")
        .and_where(Expr::col("message_id").eq(id))
        .to_owned();
    db.query_one(&query).await.unwrap().is_some()
}

async fn inbox_count(db: &DatabaseConnection) -> i64 {
    let query = Query::select().expr(Expr::cust("COUNT(*)")).from("inbox").to_owned();
    let row = db.query_one(&query).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn old_rows_go_and_young_rows_stay(db: DatabaseConnection) {
    let settings = RetentionSettings::default(); // outbox 1 day, inbox 7 days
    let old_published = outbox_rows(&db, 7, Some(ago(2 * DAY))).await;
    let young_published = outbox_rows(&db, 3, Some(ago(DAY / 2))).await;
    let unsent = outbox_rows(&db, 2, None).await;
    let old_ids = inbox_ids(&db, 8, ago(8 * DAY)).await;
    let young_ids = inbox_ids(&db, 4, ago(6 * DAY)).await;

    // Batches of 3: several per table, the last one short.
    let sweeper = Sweeper::new(db.clone(), messaging_rules(&settings)).batch_size(3);
    let swept = sweeper.sweep(Utc::now(), &CancellationToken::new()).await.unwrap();
    assert_eq!(
        swept,
        vec![
            Swept {
                table: "outbox",
                deleted: 7
            },
            Swept {
                table: "inbox",
                deleted: 8
            }
        ]
    );

    let left: Vec<Uuid> = entity::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    for id in &old_published {
        assert!(!left.contains(id), "old published row {id} deleted");
    }
    for id in young_published.iter().chain(&unsent) {
        assert!(left.contains(id), "row {id} kept");
    }
    for id in &old_ids {
        assert!(!inbox_has(&db, id).await, "old inbox id {id} deleted");
    }
    for id in &young_ids {
        assert!(inbox_has(&db, id).await, "young inbox id {id} kept");
    }
    // A kept id still dedupes its message.
    assert!(!inbox::first_delivery(&db, &young_ids[0]).await.unwrap());

    // Nothing more to do: a second sweep deletes nothing.
    let again = sweeper.sweep(Utc::now(), &CancellationToken::new()).await.unwrap();
    assert!(again.iter().all(|swept| swept.deleted == 0), "{again:?}");
}

#[tokio::test]
async fn postgres_old_rows_go_and_young_rows_stay() {
    let config = postgres().await;
    old_rows_go_and_young_rows_stay(connect(&config).await).await;
}

#[tokio::test]
async fn sqlite_old_rows_go_and_young_rows_stay() {
    let dir = tempfile::tempdir().unwrap();
    old_rows_go_and_young_rows_stay(connect(&sqlite(&dir)).await).await;
}

/// Two sweepers, each on a connection pool of its own as two replicas would be, sweep the same
/// tables at once: both succeed, and between them every old row is deleted exactly once.
async fn racing_sweepers_delete_each_row_once(config: DatabaseConfig) {
    const OLD: usize = 3_000;
    const YOUNG: usize = 200;
    let db = connect(&config).await;
    inbox_ids(&db, OLD, ago(10 * DAY)).await;
    inbox_ids(&db, YOUNG, ago(DAY)).await;
    outbox_rows(&db, OLD, Some(ago(3 * DAY))).await;

    let settings = RetentionSettings::default();
    let sweepers = [connect(&config).await, connect(&config).await]
        .map(|db| Sweeper::new(db, messaging_rules(&settings)).batch_size(100));
    let shutdown = CancellationToken::new();
    let (a, b) = tokio::join!(
        sweepers[0].sweep(Utc::now(), &shutdown),
        sweepers[1].sweep(Utc::now(), &shutdown)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let total = |table: &str| -> u64 {
        a.iter()
            .chain(&b)
            .filter(|swept| swept.table == table)
            .map(|swept| swept.deleted)
            .sum()
    };
    assert_eq!(total("inbox"), OLD as u64, "{a:?} {b:?}");
    assert_eq!(total("outbox"), OLD as u64, "{a:?} {b:?}");
    assert_eq!(inbox_count(&db).await, YOUNG as i64);
    assert_eq!(entity::Entity::find().count(&db).await.unwrap(), 0);
}

#[tokio::test]
async fn postgres_racing_sweepers_delete_each_row_once() {
    racing_sweepers_delete_each_row_once(postgres().await).await;
}

#[tokio::test]
async fn sqlite_racing_sweepers_delete_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    racing_sweepers_delete_each_row_once(sqlite(&dir)).await;
}

/// The sweeper's loop sweeps at once when started, and stops on shutdown.
#[tokio::test]
async fn the_loop_sweeps_at_start_and_stops_on_shutdown() {
    let db = connect(&postgres().await).await;
    let old = inbox_ids(&db, 5, ago(8 * DAY)).await;
    let shutdown = CancellationToken::new();
    let sweeper = Sweeper::new(db.clone(), messaging_rules(&RetentionSettings::default()));
    let task = tokio::spawn(sweeper.run(Duration::from_secs(3_600), shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(30), async {
        while inbox_has(&db, &old[0]).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the first sweep runs at start");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the sweeper stops on shutdown")
        .unwrap();
}
