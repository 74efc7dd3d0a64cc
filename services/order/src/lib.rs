//! The order service: orders with price snapshots, payments, shipment progression, cancellation and returns (`shop.order.v1`).
//! A library, so the `order` binary and the one-process `shop` binary start it the same way.

pub mod config;
pub mod migration;

use std::net::SocketAddr;

use sea_orm::DatabaseConnection;
use shop_platform::{
    config::{ConfigError, Env},
    grpc::server::{BoundGrpcServer, GrpcServerBuilder},
    outbox::{OutboxRelay, RelayOptions},
    service::{Backends, MeshService, ServiceSettings, open_database},
};
use tokio_util::sync::CancellationToken;

pub use config::OrderConfig;

/// The running order service.
#[derive(Debug)]
pub struct OrderService {
    server: BoundGrpcServer,
    relay: OutboxRelay,
    db: DatabaseConnection,
}

impl OrderService {
    /// The service's database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl MeshService for OrderService {
    const NAME: &'static str = "order";
    const DEFAULT_PORT: u16 = 50053;
    type Config = OrderConfig;

    fn config_from_env(env: &impl Env) -> Result<OrderConfig, ConfigError> {
        OrderConfig::from_env(env)
    }

    async fn build(settings: ServiceSettings, _config: OrderConfig, backends: Backends) -> anyhow::Result<Self> {
        let db = open_database::<migration::Migrator>(&settings).await?;
        let relay = OutboxRelay::new(db.clone(), backends.queue, RelayOptions::default());
        let server = GrpcServerBuilder::new(settings.grpc_addr)
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
            .bind()
            .await?;
        Ok(Self { server, relay, db })
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let relay = tokio::spawn(self.relay.run(shutdown.clone()));
        let served = self.server.serve(shutdown).await;
        relay.await?;
        served
    }
}
