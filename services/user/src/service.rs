//! Builds the user service from its settings and runs it: the gRPC server and the purge of old
//! sessions.

use std::{net::SocketAddr, time::Duration};

use sea_orm::DatabaseConnection;
use shop_platform::{
    config::{ConfigError, Env},
    grpc::server::{BoundGrpcServer, GrpcServerBuilder},
    health::Dependency,
    service::{Backends, MeshService, ServiceSettings, open_database},
};
use shop_proto::pb::user::{
    cart_service_server::CartServiceServer, user_service_server::UserServiceServer,
    wishlist_service_server::WishlistServiceServer,
};
use tokio_util::sync::CancellationToken;

use crate::{catalog, config::UserConfig, context::Context, grpc, migration};

/// How often expired refresh tokens and old sessions are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3_600);

/// The running user service.
#[derive(Debug)]
pub struct UserService {
    server: BoundGrpcServer,
    context: Context,
}

impl UserService {
    /// The service's database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.context.db
    }

    /// The service's state, for in-process callers and tests.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

impl MeshService for UserService {
    const NAME: &'static str = "user";
    const DEFAULT_PORT: u16 = 50051;
    type Config = UserConfig;
    type Migrator = migration::Migrator;

    fn config_from_env(env: &impl Env) -> Result<UserConfig, ConfigError> {
        UserConfig::from_env(env)
    }

    async fn build(settings: ServiceSettings, config: UserConfig, backends: Backends) -> anyhow::Result<Self> {
        let db = open_database::<migration::Migrator>(&settings).await?;
        let catalog = catalog::Catalog::connect(&config.catalog_target, &settings.mesh).await?;
        let context = Context::new(db.clone(), backends.cache.clone(), catalog, &config).await?;
        context.bootstrap(config.admin.as_ref()).await?;
        let server = GrpcServerBuilder::for_service(&settings)
            .depends_on(Dependency::database(db))
            .depends_on(Dependency::cache(backends.cache))
            .add_service(UserServiceServer::new(grpc::UserApi::new(context.clone())))
            .add_service(WishlistServiceServer::new(grpc::WishlistApi::new(context.clone())))
            .add_service(CartServiceServer::new(grpc::CartApi::new(context.clone())))
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
            .bind()
            .await?;
        Ok(Self { server, context })
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sessions = self.context.sessions.clone();
        // A child token: stopping the purge must not stop anything else sharing `shutdown`.
        let stop = shutdown.child_token();
        let stop_purge = stop.clone();
        let purge = tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = every.tick() => match sessions.purge_expired().await {
                        Ok(0) => {}
                        Ok(purged) => tracing::info!(purged, "old sessions deleted"),
                        Err(error) => tracing::warn!(%error, "purging old sessions failed"),
                    },
                }
            }
        });
        let served = self.server.serve(shutdown).await;
        stop_purge.cancel();
        purge.await.ok();
        served
    }
}
