//! The order service as the binaries start it: built (database migrated, queues declared, gRPC
//! listener bound), then run with its background tasks: the outbox relay (ReserveStock and
//! ReleaseStock to the catalog, OrderPlaced to the user service), the stock results consumers, the shipment scheduler, the
//! payment worker, the reconciler, the retention sweeper, and the gauges polled in the
//! background (dead-letter and queue depths, the outbox, the pending orders).
//! Every one of them is safe to run in several replicas at once.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use sea_orm::{DatabaseBackend, DatabaseConnection};
use shop_platform::{
    config::{ConfigError, Env},
    grpc::server::{BoundGrpcServer, GrpcServerBuilder},
    health::Dependency,
    outbox::{OutboxGauge, OutboxRelay},
    queue::{ConsumedQueueGauges, QueueSpec, WorkQueue},
    retention::Sweeper,
    service::{Backends, MeshService, ServiceSettings, open_database},
    telemetry::metrics::POLL_INTERVAL,
};
use shop_proto::pb::order::order_service_server::OrderServiceServer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    clock::{SharedClock, SystemClock},
    config::OrderConfig,
    context::Context,
    grpc::OrderApi,
    idempotency,
    metrics::{self, PendingOrders},
    migration,
    payment::{PaymentProvider, TestPaymentProvider},
    placements,
    reconcile::Reconciler,
    results, retention,
    settlement::PaymentWorker,
    shipping::ShipmentScheduler,
    upstream::{RecentProducts, Upstream},
};

/// The running order service.
#[derive(Debug)]
pub struct OrderService {
    server: BoundGrpcServer,
    relay: Option<OutboxRelay>,
    queue: Arc<dyn WorkQueue>,
    ctx: Context,
}

/// Builds an [`OrderService`] with parts other than the defaults: a clock, a payment provider,
/// or no outbox relay.
#[derive(Debug)]
pub struct OrderServiceBuilder {
    settings: ServiceSettings,
    config: OrderConfig,
    backends: Backends,
    clock: SharedClock,
    payments: Option<Arc<dyn PaymentProvider>>,
    relay: bool,
}

impl OrderServiceBuilder {
    /// Takes the time from `clock` instead of the system clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Pays through `provider` instead of the built-in test provider.
    pub fn payments(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.payments = Some(provider);
        self
    }

    /// Runs no outbox relay: committed messages stay unpublished until a relay runs, as when a
    /// process dies between a commit and the publish.
    pub fn without_relay(mut self) -> Self {
        self.relay = false;
        self
    }

    /// Migrates the database, declares its queues, and binds the gRPC listener.
    pub async fn build(self) -> anyhow::Result<OrderService> {
        let Self {
            settings,
            config,
            backends,
            clock,
            payments,
            relay,
        } = self;
        let db = open_database::<migration::Migrator>(&settings).await?;
        let queue = backends.queue;
        // The queues it publishes to are declared by both ends, so that no message is published
        // to a queue nobody declared yet, whichever end starts first.
        let specs: Vec<QueueSpec> = config
            .queues
            .names()
            .into_iter()
            .chain([config.order_queues.placed.as_str()])
            .map(|name| {
                QueueSpec::new(name).with_dead_letter_max_length(config.retention.platform.dead_letter_max_length)
            })
            .collect();
        queue.declare_all(&specs).await.context("declaring the queues")?;
        let outbox_relay = OutboxRelay::new(db.clone(), Arc::clone(&queue), settings.outbox.clone());
        let recent_products = Arc::new(RecentProducts::new(config.product_ttl));
        let upstream = Upstream::connect(&config, &settings.mesh, Arc::clone(&recent_products)).await?;
        let payments = payments.unwrap_or_else(|| Arc::new(TestPaymentProvider::new(config.decline_amount)));
        let ctx = Context {
            placements: placements::start(db.clone(), clock.clone()),
            keys: idempotency::start_lookups(db.clone()),
            db,
            clock,
            payments,
            config: Arc::new(config),
            relay: outbox_relay.clone(),
            payments_due: Arc::default(),
            recent_products,
        };
        let server = GrpcServerBuilder::for_service(&settings)
            .depends_on(Dependency::database(ctx.db.clone()))
            .depends_on(Dependency::queue(Arc::clone(&queue)))
            .add_service(OrderServiceServer::new(OrderApi::new(ctx.clone(), upstream)))
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
            .bind()
            .await?;
        Ok(OrderService {
            server,
            relay: relay.then_some(outbox_relay),
            queue,
            ctx,
        })
    }
}

impl OrderService {
    /// A builder for a service with non-default parts (see [`OrderServiceBuilder`]).
    pub fn builder(settings: ServiceSettings, config: OrderConfig, backends: Backends) -> OrderServiceBuilder {
        OrderServiceBuilder {
            settings,
            config,
            backends,
            clock: Arc::new(SystemClock),
            payments: None,
            relay: true,
        }
    }

    /// The service's database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.ctx.db
    }

    /// The shipment scheduler, to move shipments by hand (when the config has no interval).
    pub fn shipments(&self) -> ShipmentScheduler {
        ShipmentScheduler::new(self.ctx.clone())
    }

    /// The reconciler, to run a pass by hand (when the config has no interval).
    pub fn reconciler(&self) -> Reconciler {
        Reconciler::new(self.ctx.clone())
    }

    /// The retention sweeper, to run a sweep by hand.
    pub fn sweeper(&self) -> Sweeper {
        retention::sweeper(self.ctx.db.clone(), &self.ctx.config.retention)
    }

    /// The payment worker, to run a pass by hand.
    pub fn payment_worker(&self) -> PaymentWorker {
        PaymentWorker::new(self.ctx.clone())
    }

    /// The pending-order gauges, to read them by hand.
    pub fn pending_orders(&self) -> PendingOrders {
        PendingOrders::new(self.ctx.clone())
    }
}

impl MeshService for OrderService {
    const NAME: &'static str = "order";
    const DEFAULT_PORT: u16 = 50053;
    type Config = OrderConfig;
    type Migrator = migration::Migrator;

    fn config_from_env(env: &impl Env) -> Result<OrderConfig, ConfigError> {
        OrderConfig::from_env(env)
    }

    async fn build(settings: ServiceSettings, config: OrderConfig, backends: Backends) -> anyhow::Result<Self> {
        Self::builder(settings, config, backends).build().await
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        metrics::init();
        // Background work stops with the server, whether it stopped on shutdown or failed.
        let background = shutdown.child_token();
        let mut tasks = JoinSet::new();
        if let Some(relay) = self.relay {
            tasks.spawn(relay.run(background.clone()));
        }
        // Row locks keep consumers of one order apart on PostgreSQL; SQLite has one writer.
        let consumers = match self.ctx.db.get_database_backend() {
            DatabaseBackend::Sqlite => 1,
            _ => self.ctx.config.result_consumers,
        };
        tasks.spawn(results::run(
            self.ctx.clone(),
            Arc::clone(&self.queue),
            consumers,
            background.clone(),
        ));
        if let Some(interval) = self.ctx.config.shipment_interval {
            tasks.spawn(ShipmentScheduler::new(self.ctx.clone()).run(interval, background.clone()));
        }
        tasks.spawn(PaymentWorker::new(self.ctx.clone()).run(background.clone()));
        if let Some(interval) = self.ctx.config.reconcile.interval {
            tasks.spawn(Reconciler::new(self.ctx.clone()).run(interval, background.clone()));
        }
        let interval = self.ctx.config.retention.platform.interval;
        let sweeper = retention::sweeper(self.ctx.db.clone(), &self.ctx.config.retention);
        tasks.spawn(sweeper.run(interval, background.clone()));
        let gauges = ConsumedQueueGauges::new(Arc::clone(&self.queue), [self.ctx.config.queues.results.clone()]);
        tasks.spawn(gauges.run(background.clone()));
        let outbox = OutboxGauge::new(self.ctx.db.clone(), Self::NAME);
        tasks.spawn(outbox.run(POLL_INTERVAL, background.clone()));
        tasks.spawn(PendingOrders::new(self.ctx.clone()).run(POLL_INTERVAL, background.clone()));
        let served = self.server.serve(shutdown).await;
        background.cancel();
        while let Some(joined) = tasks.join_next().await {
            joined.context("an order service task panicked")?;
        }
        served
    }
}
