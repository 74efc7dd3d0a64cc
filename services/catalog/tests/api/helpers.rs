//! The catalog service through the platform's harness (`shop_platform::testing::service`): its
//! own PostgreSQL database, stock queues no other test uses, port 0; and typed helpers to drive
//! it and check the stock invariant.

use std::{collections::BTreeMap, ops::Deref, sync::Arc, time::Duration};

use prost::Message as _;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use shop_catalog::{
    CatalogConfig, CatalogService, StockConfig, StockQueues,
    entity::{product, reservation, reservation_line},
    products::{Products, input::NewProduct},
    stock::StockWorker,
};
use shop_platform::{
    grpc::{
        client::GrpcChannel,
        identity::{Caller, Role},
    },
    queue::{self, Message, WorkQueue},
    testing::{
        self,
        service::{TestService, TestSetup},
    },
};
use shop_proto::pb::{
    catalog::catalog_service_client::CatalogServiceClient,
    events::{ReleaseStock, ReserveStock, StockLine},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Where the queue lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broker {
    /// In-process.
    Memory,
    /// The real RabbitMQ.
    Rabbit,
}

/// A running catalog service (the harness's [`TestService`], which it derefs to: `addr`, `db`)
/// with its stock settings and queue.
pub struct TestApp {
    service: TestService<CatalogService>,
    /// The stock settings the test publishes by: the service's own, unless
    /// [`spawn_app_without_workers`] gave it others.
    pub config: StockConfig,
    /// The work queue (the very instance the service consumes when it is in-process).
    pub queue: Arc<dyn WorkQueue>,
}

impl Deref for TestApp {
    type Target = TestService<CatalogService>;

    fn deref(&self) -> &Self::Target {
        &self.service
    }
}

/// A catalog service on the in-process queue (for the product rpcs).
pub async fn spawn_app() -> TestApp {
    spawn_app_on(Broker::Memory, &[]).await
}

/// A catalog service on `broker`, with the variables `env` set (overrides of the test's).
pub async fn spawn_app_on(broker: Broker, env: &[(&str, &str)]) -> TestApp {
    let setup = TestSetup::new(CatalogService::db).unique_queues(&StockQueues::VARIABLES);
    let setup = match broker {
        Broker::Memory => setup,
        Broker::Rabbit => setup.rabbitmq(),
    };
    start(setup.envs(env.iter().copied())).await
}

/// A catalog service on the one-process run's backends: SQLite and the in-process queue.
pub async fn spawn_embedded_app() -> TestApp {
    start(TestSetup::new(CatalogService::db).embedded()).await
}

async fn start(setup: TestSetup<CatalogService>) -> TestApp {
    let service = setup.start().await;
    TestApp {
        config: CatalogConfig::from_env(service.env()).unwrap().stock,
        queue: Arc::clone(&service.backends().queue),
        service,
    }
}

/// A catalog service on RabbitMQ whose own consumers read other queues than [`TestApp::config`]
/// names: only the worker replicas a test starts with [`TestApp::spawn_worker`] take its work.
pub async fn spawn_app_without_workers() -> TestApp {
    let mut app = spawn_app_on(Broker::Rabbit, &[]).await;
    app.config = StockConfig {
        queues: StockQueues::prefixed(&testing::unique_name("stock")),
        ..StockConfig::default()
    };
    let queues = app.config.queues.names().map(str::to_owned);
    app.service.delete_queues_on_stop(queues);
    StockWorker::new(app.db.clone(), app.queue.clone(), app.config.clone())
        .declare()
        .await
        .unwrap();
    app
}

impl TestApp {
    /// A client of the service.
    pub async fn client(&self) -> CatalogServiceClient<GrpcChannel> {
        CatalogServiceClient::new(self.channel().await)
    }

    /// Stops the service and waits for it (bounded).
    pub async fn stop(self) {
        self.service.stop().await;
    }

    /// Another worker replica: its own database pool and broker connection (through `amqp_url`
    /// when given, e.g. a fault proxy).
    pub async fn spawn_worker(&self, amqp_url: Option<&str>) -> WorkerHandle {
        let db = shop_platform::db::connect(&self.settings().database).await.unwrap();
        let queue = queue::from_url(amqp_url.unwrap_or(&testing::amqp_url())).await.unwrap();
        let worker = StockWorker::new(db, queue, self.config.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        WorkerHandle { shutdown, task }
    }

    /// A product with `stock` units, owned by a fresh seller.
    pub async fn product(&self, stock: i64) -> Uuid {
        let seller = caller(Role::Seller);
        let new = NewProduct {
            name: "Flash sale lamp".into(),
            description: String::new(),
            price_amount: 12_900,
            currency: "KRW".into(),
            stock,
            visible: true,
        };
        Products::new(self.db.clone()).create(&seller, new).await.unwrap().id
    }

    /// Publishes ReserveStock for `order` with `lines`; returns the message id.
    pub async fn reserve(&self, order: Uuid, lines: &[(Uuid, u32)]) -> String {
        let message = reserve_message(order, lines);
        let id = message.id.clone();
        self.queue
            .publish(&self.config.queues.reserve, vec![message])
            .await
            .unwrap();
        id
    }

    /// Publishes one message to the reserve queue.
    pub async fn publish_reserve(&self, messages: Vec<Message>) {
        self.queue.publish(&self.config.queues.reserve, messages).await.unwrap();
    }

    /// Publishes messages to the release queue.
    pub async fn publish_release(&self, messages: Vec<Message>) {
        self.queue.publish(&self.config.queues.release, messages).await.unwrap();
    }

    /// The product's stock.
    pub async fn stock(&self, product: Uuid) -> i64 {
        product::Entity::find_by_id(product)
            .one(&self.db)
            .await
            .unwrap()
            .unwrap()
            .stock
    }

    /// How many orders were answered, with `status` (or any when `None`).
    pub async fn reservations(&self, status: Option<&str>) -> u64 {
        let mut query = reservation::Entity::find();
        if let Some(status) = status {
            query = query.filter(reservation::Column::Status.eq(status));
        }
        query.count(&self.db).await.unwrap()
    }

    /// Waits until `count` orders were answered (fails after `within`).
    pub async fn wait_for_reservations(&self, count: u64, within: Duration) {
        let waited = tokio::time::timeout(within, async {
            while self.reservations(None).await < count {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "only {} of {count} orders answered within {within:?}",
            self.reservations(None).await
        );
    }

    /// Waits until `count` releases were applied.
    pub async fn wait_for_releases(&self, count: u64, within: Duration) {
        let count = i64::try_from(count).unwrap();
        self.wait_for_rows("releases", count, within, "releases").await;
    }

    /// Waits until `count` distinct message ids were applied (the inbox is written in the same
    /// transaction as their effects).
    pub async fn wait_for_inbox(&self, count: i64, within: Duration) {
        self.wait_for_rows("inbox", count, within, "messages").await;
    }

    /// Waits until `table` holds `count` rows; fails after `within`, naming them `what`.
    async fn wait_for_rows(&self, table: &str, count: i64, within: Duration, what: &str) {
        let query = format!("SELECT count(*) AS n FROM {table}");
        let waited = tokio::time::timeout(within, async {
            loop {
                let row = self
                    .db
                    .query_one_raw(sea_orm::Statement::from_string(self.db.get_database_backend(), &query))
                    .await
                    .unwrap()
                    .unwrap();
                if row.try_get::<i64>("", "n").unwrap() >= count {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "{count} {what} not applied within {within:?}");
    }

    /// Holds `product`'s row lock until the returned transaction ends, as a long transaction
    /// would: a worker that reaches the product waits, mid-batch.
    pub async fn lock_product(&self, product: Uuid) -> sea_orm::DatabaseTransaction {
        use sea_orm::TransactionTrait as _;
        let txn = self.db.begin().await.unwrap();
        txn.execute_unprepared(&format!("SELECT 1 FROM products WHERE id = '{product}' FOR UPDATE"))
            .await
            .unwrap();
        txn
    }

    /// Waits until every answer in the outbox was published.
    pub async fn wait_for_outbox_drained(&self, within: Duration) {
        use shop_platform::outbox::entity;
        let waited = tokio::time::timeout(within, async {
            while entity::Entity::find()
                .filter(entity::Column::PublishedAt.is_null())
                .count(&self.db)
                .await
                .unwrap()
                > 0
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the outbox was not drained within {within:?}");
    }

    /// The answers written to the outbox, by message type.
    pub async fn answers(&self) -> BTreeMap<String, Vec<Vec<u8>>> {
        let mut answers: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for row in shop_platform::outbox::entity::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
        {
            answers.entry(row.kind).or_default().push(row.payload);
        }
        answers
    }

    /// Asserts, for every product, initial stock = stock + reserved and not released.
    pub async fn assert_invariant(&self, initial: &[(Uuid, i64)]) {
        for (product, initial) in initial {
            let lines = reservation_line::Entity::find()
                .filter(reservation_line::Column::ProductId.eq(*product))
                .all(&self.db)
                .await
                .unwrap();
            let held: i64 = lines.iter().map(|line| line.quantity - line.released).sum();
            let stock = self.stock(*product).await;
            assert!(stock >= 0, "stock of {product} is {stock}");
            assert_eq!(
                *initial,
                stock + held,
                "product {product}: initial {initial} != stock {stock} + held {held}"
            );
        }
    }
}

/// A worker replica started by a test.
pub struct WorkerHandle {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl WorkerHandle {
    /// Stops it cleanly (bounded).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the worker stops within 15 s")
            .unwrap()
            .unwrap();
    }
}

/// A signed-in caller with `role`.
pub fn caller(role: Role) -> Caller {
    Caller::new(Uuid::now_v7(), role, None)
}

/// A request carrying `caller`'s identity.
pub fn signed<T>(message: T, caller: &Caller) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    caller.attach(&mut request);
    request
}

fn lines(lines: &[(Uuid, u32)]) -> Vec<StockLine> {
    lines
        .iter()
        .map(|(product, quantity)| StockLine {
            product_id: product.to_string(),
            quantity: *quantity,
        })
        .collect()
}

/// A ReserveStock message as the order service's relay publishes it.
pub fn reserve_message(order: Uuid, items: &[(Uuid, u32)]) -> Message {
    Message {
        id: Uuid::now_v7().to_string(),
        kind: shop_proto::message_type::<ReserveStock>(),
        payload: ReserveStock {
            order_id: order.to_string(),
            lines: lines(items),
        }
        .encode_to_vec(),
        headers: BTreeMap::new(),
    }
}

/// A ReleaseStock message.
pub fn release_message(order: Uuid, release: Uuid, items: &[(Uuid, u32)]) -> Message {
    Message {
        id: Uuid::now_v7().to_string(),
        kind: shop_proto::message_type::<ReleaseStock>(),
        payload: ReleaseStock {
            order_id: order.to_string(),
            release_id: release.to_string(),
            lines: lines(items),
        }
        .encode_to_vec(),
        headers: BTreeMap::new(),
    }
}

/// How many transactions of this database wait for a lock now.
pub async fn waiting_locks(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// Waits until some transaction of this database waits for a lock: a worker is mid-batch.
pub async fn wait_for_blocked_worker(db: &DatabaseConnection) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while waiting_locks(db).await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a worker blocks on the locked product within 20 s");
}
