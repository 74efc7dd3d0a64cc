//! `spawn()`: through the platform's harness (`shop_platform::testing::service`), the real
//! catalog service (products and its stock worker) on a fresh PostgreSQL database and RabbitMQ
//! queues no other test uses (or, when asked, SQLite files and the in-process queue), when asked
//! the real user service (carts), and the order service on port 0 beside them, with a manual
//! clock and a counting payment provider; and typed helpers to drive them.
//!
//! The order service reads its settings from the environment like its binary; what no variable
//! can say is injected through its own builder in the harness's build hook: the clock, the
//! payment provider, no relay, and no scheduler or reconciler loop (the tests run them by hand).

use std::{sync::Arc, time::Duration};

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use shop_catalog::{CatalogService, StockQueues};
use shop_order::{
    ManualClock, OrderConfig, OrderQueues, OrderService, PaymentProvider, PendingOrders, Reconciler, ShipmentScheduler,
    entity::{OrderStatus, order, release},
};
use shop_platform::{
    grpc::{
        client::GrpcChannel,
        identity::{Caller, Role},
    },
    outbox::{OutboxRelay, RelayOptions},
    queue,
    testing::service::{TestService, TestSetup},
};
use shop_proto::pb::{
    catalog::catalog_service_client::CatalogServiceClient,
    order::{
        self as pb, CancelOrderRequest, GetOrderRequest, OrderLine, OrderLines, PlaceOrderRequest,
        ReturnOrderItemRequest, order_service_client::OrderServiceClient, place_order_request::Source,
    },
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};
use uuid::Uuid;

use shop_user::UserService;

use crate::{cart::start_users, payments::CountingPayments};

/// How long anything asynchronous may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// An order service instance and its scheduler.
pub struct OrderInstance {
    pub running: TestService<OrderService>,
    pub shipments: ShipmentScheduler,
    pub reconciler: Reconciler,
    pub pending: PendingOrders,
    pub client: OrderServiceClient<GrpcChannel>,
}

/// The catalog and the order service(s), sharing one database and the broker.
pub struct TestMesh {
    pub clock: ManualClock,
    pub catalog: TestService<CatalogService>,
    pub orders: Vec<OrderInstance>,
    /// The order settings, as every instance read them.
    pub config: OrderConfig,
    pub payments: Arc<CountingPayments>,
    /// The user service, when the mesh runs it (see `cart`).
    pub users: Option<TestService<UserService>>,
    pub catalog_client: CatalogServiceClient<GrpcChannel>,
    /// The variables of every order service instance, beside the catalog's.
    env: Vec<(&'static str, String)>,
    pub(crate) seller: Caller,
}

/// How to start the mesh.
pub struct Options {
    /// Order service instances (at least one).
    pub instances: usize,
    /// Whether the first instance runs its outbox relay.
    pub relay: bool,
    /// Variables of the order service, over the mesh's.
    pub env: &'static [(&'static str, &'static str)],
    /// Variables of the catalog service.
    pub catalog_env: &'static [(&'static str, &'static str)],
    /// SQLite files and the in-process queue (the one-process run's defaults) instead of
    /// PostgreSQL and RabbitMQ.
    pub embedded: bool,
    /// The real user service, for orders from the cart (without it, the user target answers
    /// nothing).
    pub users: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            instances: 1,
            relay: true,
            env: &[],
            catalog_env: &[],
            embedded: false,
            users: false,
        }
    }
}

/// The mesh with one order service.
pub async fn spawn() -> TestMesh {
    spawn_with(Options::default()).await
}

/// The mesh as `options` say.
pub async fn spawn_with(options: Options) -> TestMesh {
    let setup = TestSetup::new(CatalogService::db);
    let setup = if options.embedded {
        setup.embedded()
    } else {
        setup.rabbitmq()
    };
    let catalog = setup
        .envs(options.catalog_env.iter().copied())
        .unique_queues(&[StockQueues::VARIABLES.as_slice(), &OrderQueues::VARIABLES].concat())
        .start()
        .await;
    let users = if options.users {
        Some(start_users(&catalog).await)
    } else {
        None
    };
    let user_target = users
        .as_ref()
        .map_or("127.0.0.1:9".to_owned(), |users| users.addr.to_string());
    let mut env = vec![
        ("SHOP_CATALOG_TARGET", format!("http://{}", catalog.addr)),
        ("SHOP_USER_TARGET", format!("http://{user_target}")),
        // Nothing ships or arrives unless a test moves the clock that far.
        ("SHOP_SHIP_AFTER", "1h".to_owned()),
        ("SHOP_DELIVER_AFTER", "2h".to_owned()),
    ];
    env.extend(options.env.iter().map(|(key, value)| (*key, (*value).to_owned())));

    let clock = ManualClock::starting_now();
    let payments = Arc::new(CountingPayments::default());
    let first = start_order(&catalog, &env, &clock, payments.for_instance(0), options.relay).await;
    let config = without_loops(OrderConfig::from_env(first.running.env()).unwrap());
    let mut mesh = TestMesh {
        clock,
        catalog_client: CatalogServiceClient::new(catalog.channel().await),
        catalog,
        orders: vec![first],
        config,
        payments,
        users,
        env,
        seller: caller(Role::Seller),
    };
    for _ in 1..options.instances {
        mesh.start_order_service(true).await;
    }
    mesh
}

/// `config` with what only a test does: no scheduler or reconciler loop (the tests tick the
/// scheduler and run the reconciler themselves).
fn without_loops(mut config: OrderConfig) -> OrderConfig {
    config.shipment_interval = None;
    config.reconcile.interval = None;
    config
}

/// An order service instance beside `catalog` (its database and broker), with `env`, the
/// test's clock and `payments`, and its outbox relay if `relay`.
async fn start_order(
    catalog: &TestService<CatalogService>,
    env: &[(&'static str, String)],
    clock: &ManualClock,
    payments: Arc<dyn PaymentProvider>,
    relay: bool,
) -> OrderInstance {
    let clock = Arc::new(clock.clone());
    let mut handles = None;
    let slot = &mut handles;
    let running = TestSetup::new(OrderService::db)
        .alongside(catalog)
        .envs(env.iter().cloned())
        .start_with(move |settings, config, backends| async move {
            let mut builder = OrderService::builder(settings, without_loops(config), backends)
                .clock(clock)
                .payments(payments);
            if !relay {
                builder = builder.without_relay();
            }
            let service = builder.build().await?;
            *slot = Some((service.shipments(), service.reconciler(), service.pending_orders()));
            Ok(service)
        })
        .await;
    let (shipments, reconciler, pending) = handles.unwrap();
    let client = OrderServiceClient::new(running.channel().await);
    OrderInstance {
        running,
        shipments,
        reconciler,
        pending,
        client,
    }
}

impl TestMesh {
    /// Starts one more order service instance on the shared database.
    pub async fn start_order_service(&mut self, relay: bool) -> usize {
        let payments = self.payments.for_instance(self.orders.len());
        let instance = start_order(&self.catalog, &self.env, &self.clock, payments, relay).await;
        self.orders.push(instance);
        self.orders.len() - 1
    }

    /// Stops the order service instance `index` (the others keep their indexes).
    pub async fn stop_order_service(&mut self, index: usize) {
        let instance = self.orders.remove(index);
        instance.running.stop().await;
    }

    /// The order database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.orders[0].running.db
    }

    /// A client of the first order service instance.
    pub fn client(&self) -> OrderServiceClient<GrpcChannel> {
        self.orders[0].client.clone()
    }

    /// Places an order of `lines` for `caller` under `key` on the first instance.
    pub async fn place(&self, caller: &Caller, key: &str, lines: &[(Uuid, u32)]) -> Result<pb::Order, Status> {
        place_on(&self.client(), caller, key, lines).await
    }

    /// The order as `caller` sees it.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<pb::Order, Status> {
        let request = GetOrderRequest { id: id.into() };
        Ok(self
            .client()
            .get_order(signed(request, caller))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    /// Waits until the order has `status`, and returns it.
    pub async fn wait_for(&self, caller: &Caller, id: &str, status: pb::OrderStatus) -> pb::Order {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let order = self.get(caller, id).await.unwrap();
            if order.status() == status {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} is {:?}, not {status:?}, after {PATIENCE:?}",
                order.status()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Cancels through the first instance.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<pb::Order, Status> {
        let request = CancelOrderRequest { id: id.into() };
        Ok(self
            .client()
            .cancel_order(signed(request, caller))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    /// Returns an item through the first instance.
    pub async fn return_item(&self, caller: &Caller, order: &str, item: &str) -> Result<pb::Order, Status> {
        let request = ReturnOrderItemRequest {
            order_id: order.into(),
            item_id: item.into(),
        };
        Ok(self
            .client()
            .return_order_item(signed(request, caller))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    /// Waits until the catalog confirmed `count` releases of the order.
    pub async fn wait_until_released(&self, order_id: &str, count: usize) {
        let order_id: Uuid = order_id.parse().unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let confirmed = release::Entity::find()
                .filter(release::Column::OrderId.eq(order_id))
                .filter(release::Column::ReleasedAt.is_not_null())
                .count(self.db())
                .await
                .unwrap();
            if confirmed == count as u64 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{confirmed} of {count} releases confirmed"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts an outbox relay on the order database, as a process started later would; it
    /// stops when the handle is dropped.
    pub async fn start_relay(&self) -> tokio_util::sync::DropGuard {
        // Its own broker connection, as another process's; the in-process queue is the one.
        let queue = match self.catalog.var("AMQP_URL") {
            Some(url) => queue::from_url(url).await.unwrap(),
            None => Arc::clone(&self.catalog.backends().queue),
        };
        let relay = OutboxRelay::new(self.db().clone(), queue, RelayOptions::default());
        let stop = CancellationToken::new();
        tokio::spawn(relay.run(stop.clone()));
        stop.drop_guard()
    }

    /// One reconciler pass on the first instance.
    pub async fn reconcile(&self) -> shop_order::reconcile::Reconciled {
        self.orders[0].reconciler.tick().await.unwrap()
    }

    /// One scheduler pass on the first instance.
    pub async fn tick(&self) -> shop_order::shipping::Progress {
        self.orders[0].shipments.tick().await.unwrap()
    }

    /// Orders in the database with `status`.
    pub async fn count(&self, status: OrderStatus) -> u64 {
        order::Entity::find()
            .filter(order::Column::Status.eq(status))
            .count(self.db())
            .await
            .unwrap()
    }

    /// Waits until the order service's inbox holds `message_id`.
    pub async fn wait_for_inbox(&self, message_id: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let query = sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM inbox WHERE message_id = $1",
            [message_id.into()],
        );
        loop {
            let row = self.db().query_one_raw(query.clone()).await.unwrap().unwrap();
            if row.try_get::<i64>("", "n").unwrap() == 1 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{message_id} was not applied");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Places an order through `client`.
pub async fn place_on(
    client: &OrderServiceClient<GrpcChannel>,
    caller: &Caller,
    key: &str,
    lines: &[(Uuid, u32)],
) -> Result<pb::Order, Status> {
    let request = PlaceOrderRequest {
        idempotency_key: key.into(),
        source: Some(Source::Items(OrderLines {
            lines: lines
                .iter()
                .map(|(product, quantity)| OrderLine {
                    product_id: product.to_string(),
                    quantity: *quantity,
                })
                .collect(),
        })),
    };
    Ok(client
        .clone()
        .place_order(signed(request, caller))
        .await?
        .into_inner()
        .order
        .unwrap())
}

/// A signed-in caller with `role`.
pub fn caller(role: Role) -> Caller {
    Caller::new(Uuid::now_v7(), role, None)
}

/// A request carrying `caller`'s identity.
pub fn signed<T>(message: T, caller: &Caller) -> Request<T> {
    let mut request = Request::new(message);
    caller.attach(&mut request);
    request
}

/// The machine code of a failed call.
pub fn code_of(status: &Status) -> (tonic::Code, String) {
    (
        status.code(),
        shop_platform::grpc::error::machine_code(status)
            .unwrap_or_default()
            .to_owned(),
    )
}

/// What `work` cost the order service in statements of each of `operations` (see
/// [`order_statements`]), from real scrapes, and its output. The service's timers (the relay's
/// and the payment worker's polls, the gauges) run statements on their own: what ran in as long
/// again after `work`, without it, is taken as theirs and subtracted.
pub async fn statements_of<T, const N: usize>(
    metrics: &shop_platform::testing::metrics::Scraper,
    operations: [&str; N],
    work: impl std::future::Future<Output = T>,
) -> (T, StatementCounts<N>) {
    let before = statements(metrics, operations).await;
    let started = tokio::time::Instant::now();
    let output = work.await;
    let during = statements(metrics, operations).await;
    tokio::time::sleep(started.elapsed()).await;
    let idle = statements(metrics, operations).await;
    (output, StatementCounts { before, during, idle })
}

/// The raw counts behind [`statements_of`], by operation: before the work, right after it, and
/// after idling as long.
#[derive(Debug)]
pub struct StatementCounts<const N: usize> {
    before: [f64; N],
    during: [f64; N],
    idle: [f64; N],
}

impl<const N: usize> StatementCounts<N> {
    /// The statements of operation `index` the work ran, the timers' own subtracted.
    pub fn net(&self, index: usize) -> f64 {
        (self.during[index] - self.before[index]) - (self.idle[index] - self.during[index])
    }
}

/// How many statements of each of `operations` the order service ran so far.
pub async fn statements<const N: usize>(
    metrics: &shop_platform::testing::metrics::Scraper,
    operations: [&str; N],
) -> [f64; N] {
    let mut counts = [0.0; N];
    for (count, operation) in counts.iter_mut().zip(operations) {
        *count = order_statements(metrics, operation).await;
    }
    counts
}

/// Statements the order service's database pool has run so far, of `operation` (`SELECT`, …;
/// every operation when empty), from a real scrape of `db.client.operation.duration`.
pub async fn order_statements(metrics: &shop_platform::testing::metrics::Scraper, operation: &str) -> f64 {
    let operation = format!(r#"db_operation_name="{operation}""#);
    let mut labels = vec![r#"db_client_connection_pool_name="order""#];
    if !operation.ends_with(r#"="""#) {
        labels.push(&operation);
    }
    metrics.sum("db_client_operation_duration_seconds_count", &labels).await
}
