//! `spawn()`: a fresh PostgreSQL database, real RabbitMQ queues no other test uses (or, when
//! asked, SQLite files and the in-process queue), the real catalog service (products and its
//! stock worker) and the order service on port 0, with a manual clock, a counting payment
//! provider and a cart double; and typed helpers to drive them.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use shop_catalog::{CatalogConfig, CatalogService, StockConfig};
use shop_order::{
    ManualClock, OrderConfig, OrderService, PendingOrders, Reconciler, ShipmentScheduler, StockQueues,
    entity::{OrderStatus, order, release},
};
use shop_platform::{
    config::MapEnv,
    db::DatabaseConfig,
    grpc::{
        client::{GrpcChannel, Target, connect},
        identity::{Caller, Role},
        mesh::{CATALOG, GATEWAY, MeshIdentity, ORDER, USER},
    },
    outbox::{OutboxRelay, RelayOptions},
    queue::{self, MemoryQueue, WorkQueue},
    service::{Backends, MeshService, ServiceSettings},
    testing,
};
use shop_proto::pb::{
    catalog::catalog_service_client::CatalogServiceClient,
    order::{
        self as pb, CancelOrderRequest, GetOrderRequest, OrderLine, OrderLines, PlaceOrderRequest,
        ReturnOrderItemRequest, order_service_client::OrderServiceClient, place_order_request::Source,
    },
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::{cart::CartDouble, payments::CountingPayments};

/// How long anything asynchronous may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A service running in the test.
pub struct Running {
    pub addr: SocketAddr,
    pub db: DatabaseConnection,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start<S: MeshService>(service: S, db: DatabaseConnection) -> Self {
        let addr = service.grpc_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(shutdown.clone()));
        Self {
            addr,
            db,
            shutdown,
            task,
        }
    }

    /// Stops it and waits (bounded).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the service stops within 15 s")
            .unwrap()
            .unwrap();
    }
}

/// An order service instance and its scheduler.
pub struct OrderInstance {
    pub running: Running,
    pub shipments: ShipmentScheduler,
    pub reconciler: Reconciler,
    pub pending: PendingOrders,
    pub client: OrderServiceClient<GrpcChannel>,
}

/// The catalog and the order service(s), sharing one database and the broker.
pub struct TestMesh {
    pub clock: ManualClock,
    pub catalog: Running,
    pub orders: Vec<OrderInstance>,
    pub config: OrderConfig,
    pub payments: Arc<CountingPayments>,
    pub cart: CartDouble,
    pub catalog_client: CatalogServiceClient<GrpcChannel>,
    database_url: String,
    broker: Broker,
    /// The members' identities; the tests call as the gateway.
    mesh: std::collections::BTreeMap<String, MeshIdentity>,
    pub(crate) seller: Caller,
    _data: Option<tempfile::TempDir>,
}

/// Where the services' messages go.
#[derive(Clone)]
enum Broker {
    /// RabbitMQ; each service opens a connection of its own, as a separate process would.
    Rabbit,
    /// One in-process queue shared by every service, as in the one-process binary.
    Memory(Arc<dyn WorkQueue>),
}

impl Broker {
    async fn backends(&self) -> Backends {
        let queue = match self {
            Self::Rabbit => queue::from_url(&testing::amqp_url()).await.unwrap(),
            Self::Memory(queue) => Arc::clone(queue),
        };
        Backends {
            cache: shop_platform::cache::from_url("memory://", "test:").await.unwrap(),
            queue,
        }
    }
}

/// How to start the mesh.
pub struct Options {
    /// Order service instances.
    pub instances: usize,
    /// Whether the first instance runs its outbox relay.
    pub relay: bool,
    /// Changes to the order settings.
    pub configure: fn(&mut OrderConfig),
    /// SQLite files and the in-process queue (the one-process run's defaults) instead of
    /// PostgreSQL and RabbitMQ.
    pub embedded: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            instances: 1,
            relay: true,
            configure: |_| {},
            embedded: false,
        }
    }
}

/// The mesh with one order service.
pub async fn spawn() -> TestMesh {
    spawn_with(Options::default()).await
}

/// The mesh as `options` say.
pub async fn spawn_with(options: Options) -> TestMesh {
    testing::init_test_logging();
    let (database_url, broker, data) = if options.embedded {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/shop.db", dir.path().display());
        (url, Broker::Memory(Arc::new(MemoryQueue::new())), Some(dir))
    } else {
        (testing::create_postgres_database().await, Broker::Rabbit, None)
    };
    let queues = StockQueues::prefixed(&testing::unique_name("orders"));

    let stock = StockConfig {
        queues: queues.clone(),
        ..StockConfig::default()
    };
    let mesh = testing::mesh();
    let settings = settings(&database_url, "catalog", &mesh[CATALOG]);
    let catalog = CatalogService::build(
        settings,
        CatalogConfig {
            stock,
            ..CatalogConfig::default()
        },
        broker.backends().await,
    )
    .await
    .unwrap();
    let catalog_db = catalog.db().clone();
    let catalog = Running::start(catalog, catalog_db).await;
    let cart = CartDouble::spawn(mesh[USER].clone()).await;

    let mut config = OrderConfig::from_env(&MapEnv::default()).unwrap();
    config.catalog = Target::parse(&format!("http://{}", catalog.addr)).unwrap();
    config.user = Target::parse(&format!("http://{}", cart.addr)).unwrap();
    config.queues = queues;
    config.shipment_interval = None; // the tests tick the scheduler themselves
    config.reconcile.interval = None; // and run the reconciler themselves
    config.ship_after = Duration::from_secs(3600);
    config.deliver_after = Duration::from_secs(2 * 3600);
    (options.configure)(&mut config);

    let mut mesh = TestMesh {
        clock: ManualClock::starting_now(),
        catalog_client: CatalogServiceClient::new(signed_channel(catalog.addr, &mesh[GATEWAY], CATALOG).await),
        catalog,
        orders: Vec::new(),
        config,
        payments: Arc::new(CountingPayments::default()),
        cart,
        database_url,
        broker,
        seller: caller(Role::Seller),
        mesh,
        _data: data,
    };
    for instance in 0..options.instances {
        mesh.start_order_service(instance > 0 || options.relay).await;
    }
    mesh
}

fn settings(database_url: &str, schema: &str, mesh: &MeshIdentity) -> ServiceSettings {
    ServiceSettings {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        database: DatabaseConfig::new(database_url, schema),
        health: Default::default(),
        mesh: mesh.clone(),
        grpc_limits: Default::default(),
    }
}

/// A channel to `addr` signing its calls as `member` for service `audience`.
async fn signed_channel(addr: SocketAddr, member: &MeshIdentity, audience: &str) -> GrpcChannel {
    let target = Target::parse(&format!("http://{addr}")).unwrap();
    connect(&target, &Default::default())
        .await
        .unwrap()
        .signed_by(member, audience)
}

impl Drop for TestMesh {
    fn drop(&mut self) {
        // Quorum queues hold broker file handles: a set left behind by every test exhausts the
        // broker's limit within a few runs. The services' tasks die with the test's runtime.
        if matches!(self.broker, Broker::Rabbit) {
            let queues = &self.config.queues;
            testing::delete_queues_blocking(vec![
                queues.reserve.clone(),
                queues.release.clone(),
                queues.results.clone(),
            ]);
        }
    }
}

impl TestMesh {
    /// Starts one more order service instance on the shared database.
    pub async fn start_order_service(&mut self, relay: bool) -> usize {
        let mut builder = OrderService::builder(
            settings(&self.database_url, "order", &self.mesh[ORDER]),
            self.config.clone(),
            self.broker.backends().await,
        )
        .clock(Arc::new(self.clock.clone()))
        .payments(self.payments.for_instance(self.orders.len()));
        if !relay {
            builder = builder.without_relay();
        }
        let service = builder.build().await.unwrap();
        let shipments = service.shipments();
        let reconciler = service.reconciler();
        let pending = service.pending_orders();
        let db = service.db().clone();
        let running = Running::start(service, db).await;
        let client = OrderServiceClient::new(signed_channel(running.addr, &self.mesh[GATEWAY], ORDER).await);
        self.orders.push(OrderInstance {
            running,
            shipments,
            reconciler,
            pending,
            client,
        });
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
        let relay = OutboxRelay::new(
            self.db().clone(),
            self.broker.backends().await.queue,
            RelayOptions::default(),
        );
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
