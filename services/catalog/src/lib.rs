//! The catalog service: products, stock levels, and the stock reservation worker fed by the work queue (`shop.catalog.v1`).
//! A library, so the `catalog` binary and the one-process `shop` binary start it the same way.

pub mod config;
pub mod entity;
pub mod migration;
pub mod products;
pub mod stock;

use std::net::SocketAddr;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use shop_platform::{
    config::{ConfigError, Env},
    grpc::server::{BoundGrpcServer, GrpcServerBuilder},
    health::Dependency,
    outbox::{OutboxRelay, RelayOptions},
    service::{Backends, MeshService, ServiceSettings, open_database},
};
use shop_proto::pb::catalog::catalog_service_server::CatalogServiceServer;
use tokio_util::sync::CancellationToken;

pub use config::{CatalogConfig, StockConfig, StockQueues};
use products::{Products, grpc::CatalogApi};
use stock::StockWorker;

/// The running catalog service.
#[derive(Debug)]
pub struct CatalogService {
    server: BoundGrpcServer,
    relay: OutboxRelay,
    worker: StockWorker,
    db: DatabaseConnection,
}

impl CatalogService {
    /// The service's database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl MeshService for CatalogService {
    const NAME: &'static str = "catalog";
    const DEFAULT_PORT: u16 = 50052;
    type Config = CatalogConfig;

    fn config_from_env(env: &impl Env) -> Result<CatalogConfig, ConfigError> {
        CatalogConfig::from_env(env)
    }

    async fn build(settings: ServiceSettings, config: CatalogConfig, backends: Backends) -> anyhow::Result<Self> {
        let db = open_database::<migration::Migrator>(&settings).await?;
        let relay = OutboxRelay::new(db.clone(), backends.queue.clone(), RelayOptions::default());
        let worker = StockWorker::new(db.clone(), backends.queue.clone(), config.stock).waking(relay.clone());
        worker.declare().await.context("declaring the stock queues")?;
        let server = GrpcServerBuilder::new(settings.grpc_addr)
            .depends_on(Dependency::database(db.clone()))
            .depends_on(Dependency::queue(backends.queue))
            .health_settings(settings.health.clone())
            .add_service(CatalogServiceServer::new(CatalogApi::new(Products::new(db.clone()))))
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
            .bind()
            .await?;
        Ok(Self {
            server,
            relay,
            worker,
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
        let served = self.server.serve(stop.clone()).await;
        stop.cancel();
        let worked = worker.await.context("the stock worker panicked");
        relay_stop.cancel();
        relay.await.context("the outbox relay panicked")?;
        served.and(worked?)
    }
}
