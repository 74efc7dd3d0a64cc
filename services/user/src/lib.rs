//! The user service: accounts, email verification, sessions and token revocation, profiles, wishlists and carts (`shop.user.v1`).
//! A library, so the `user` binary and the one-process `shop` binary start it the same way.

pub mod config;
pub mod migration;

use std::net::SocketAddr;

use sea_orm::DatabaseConnection;
use shop_platform::{
    config::{ConfigError, Env},
    grpc::server::{BoundGrpcServer, GrpcServerBuilder},
    service::{Backends, MeshService, ServiceSettings, open_database},
};
use tokio_util::sync::CancellationToken;

pub use config::UserConfig;

/// The running user service.
#[derive(Debug)]
pub struct UserService {
    server: BoundGrpcServer,
    db: DatabaseConnection,
}

impl UserService {
    /// The service's database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl MeshService for UserService {
    const NAME: &'static str = "user";
    const DEFAULT_PORT: u16 = 50051;
    type Config = UserConfig;

    fn config_from_env(env: &impl Env) -> Result<UserConfig, ConfigError> {
        UserConfig::from_env(env)
    }

    async fn build(settings: ServiceSettings, _config: UserConfig, _backends: Backends) -> anyhow::Result<Self> {
        let db = open_database::<migration::Migrator>(&settings).await?;
        let server = GrpcServerBuilder::new(settings.grpc_addr)
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
            .bind()
            .await?;
        Ok(Self { server, db })
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.server.serve(shutdown).await
    }
}
