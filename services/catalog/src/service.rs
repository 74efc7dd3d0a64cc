//! The catalog service as the binaries start it: built (database migrated, stock queues
//! declared, gRPC listener bound), then run with its background tasks: the stock worker, the
//! outbox relay (its answers to the order service), the retention sweeper, and the gauges
//! polled in the background (dead-letter and queue depths, the outbox). Every one of them is
//! safe to run in several replicas at once.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use shop_platform::{
    config::{ConfigError, Env},
    grpc::server::{BoundGrpcServer, GrpcServerBuilder},
    health::Dependency,
    outbox::{OutboxGauge, OutboxRelay},
    queue::ConsumedQueueGauges,
    retention::Sweeper,
    service::{Backends, MeshService, ServiceSettings, open_database},
    telemetry::metrics::POLL_INTERVAL,
};
use shop_proto::pb::catalog::catalog_service_server::CatalogServiceServer;
use tokio_util::sync::CancellationToken;

use crate::{config::CatalogConfig, grpc::CatalogApi, migration, products::Products, retention, stock::StockWorker};

/// The running catalog service.
#[derive(Debug)]
pub struct CatalogService {
    server: BoundGrpcServer,
    relay: OutboxRelay,
    worker: StockWorker,
    sweeper: Sweeper,
    sweep_interval: std::time::Duration,
    gauges: ConsumedQueueGauges,
    db: DatabaseConnection,
}

impl CatalogService {
    /// The service's database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The retention sweeper, to run a sweep by hand.
    pub fn sweeper(&self) -> Sweeper {
        self.sweeper.clone()
    }
}

impl MeshService for CatalogService {
    const NAME: &'static str = "catalog";
    const DEFAULT_PORT: u16 = 50052;
    type Config = CatalogConfig;
    type Migrator = migration::Migrator;

    fn config_from_env(env: &impl Env) -> Result<CatalogConfig, ConfigError> {
        CatalogConfig::from_env(env)
    }

    async fn build(settings: ServiceSettings, config: CatalogConfig, backends: Backends) -> anyhow::Result<Self> {
        let db = open_database::<migration::Migrator>(&settings).await?;
        let relay = OutboxRelay::new(db.clone(), backends.queue.clone(), settings.outbox.clone());
        let worker = StockWorker::new(db.clone(), backends.queue.clone(), config.stock)
            .waking(relay.clone())
            .dead_letter_max_length(config.retention.platform.dead_letter_max_length);
        worker.declare().await.context("declaring the stock queues")?;
        let gauges = ConsumedQueueGauges::new(Arc::clone(&backends.queue), worker.consumed_queues());
        let sweeper = retention::sweeper(db.clone(), &config.retention);
        let server = GrpcServerBuilder::for_service(&settings)
            .depends_on(Dependency::database(db.clone()))
            .depends_on(Dependency::queue(backends.queue))
            .add_service(CatalogServiceServer::new(CatalogApi::new(Products::new(db.clone()))))
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
            .bind()
            .await?;
        Ok(Self {
            server,
            relay,
            worker,
            sweeper,
            sweep_interval: config.retention.platform.interval,
            gauges,
            db,
        })
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Stopped in order: the server and the worker on the signal (or when serving fails),
        // the relay only after the worker's last answers are in the outbox.
        let stop = shutdown.child_token();
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let worker = tokio::spawn(self.worker.run(stop.clone()));
        let sweeper = tokio::spawn(self.sweeper.run(self.sweep_interval, stop.clone()));
        let gauges = tokio::spawn(self.gauges.run(stop.clone()));
        let outbox = tokio::spawn(OutboxGauge::new(self.db.clone(), Self::NAME).run(POLL_INTERVAL, stop.clone()));
        let served = self.server.serve(stop.clone()).await;
        stop.cancel();
        let worked = worker.await.context("the stock worker panicked");
        sweeper.await.context("the retention sweeper panicked")?;
        gauges.await.context("the queue gauges panicked")?;
        outbox.await.context("the outbox gauge panicked")?;
        relay_stop.cancel();
        relay.await.context("the outbox relay panicked")?;
        served.and(worked?)
    }
}
