//! The user service: accounts, email verification, sessions and token revocation, profiles,
//! wishlists and carts (`shop.user.v1`). A library, so the `user` binary and the one-process
//! `shop` binary start it the same way.
//!
//! What it keeps where:
//! - the database (its own schema or SQLite file): accounts (argon2id hashes), sessions, refresh
//!   tokens (SHA-256 digests), wishlist items and cart lines;
//! - the shared cache, under `user:`: verification codes (salted digests) with their attempt
//!   counters, verification tokens, send-rate and sign-in failure counters, and the revocation
//!   store read by CheckTokenRevoked (revoked `jti`s until their expiry, ended sessions for one
//!   access-token lifetime).
//!
//! Request metadata read besides the identity of `shop.common.v1`: `x-shop-client-ip`, the
//! client's address as the gateway saw it, which keys the per-client limit on verification mails
//! (without it, the peer address of the call is used).
//!
//! Limits (configurable, see [`UserConfig`]): a code lives 5 minutes and allows 5 attempts; one
//! mail per address per minute and 5 per hour, 30 verification requests per client per hour;
//! 5 failed password checks per address per 15 minutes; quantities 1 to 1000; 100 wishlist items
//! and 100 cart lines per user (so a listing's products come in one catalog call).

pub mod accounts;
pub mod admin;
pub mod app;
pub mod cart;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod entities;
pub mod key_file;
pub mod login;
pub mod mail;
pub mod migration;
pub mod passwords;
pub mod pricing;
pub mod rpc;
pub mod secrets;
pub mod sessions;
pub mod signup;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod users;
pub mod verification;
pub mod wishlist;

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

pub use app::App;
pub use config::UserConfig;

/// How often expired refresh tokens and old sessions are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3_600);

/// The running user service.
#[derive(Debug)]
pub struct UserService {
    server: BoundGrpcServer,
    app: App,
}

impl UserService {
    /// The service's database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.app.db
    }

    /// The service's state, for in-process callers and tests.
    pub fn app(&self) -> &App {
        &self.app
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
        let app = App::new(db.clone(), backends.cache.clone(), catalog, &config).await?;
        app.bootstrap(config.admin.as_ref()).await?;
        let server = GrpcServerBuilder::new(settings.grpc_addr, settings.mesh.clone())
            .depends_on(Dependency::database(db))
            .depends_on(Dependency::cache(backends.cache))
            .health_settings(settings.health.clone())
            .add_service(UserServiceServer::new(rpc::UserRpc::new(app.clone())))
            .add_service(WishlistServiceServer::new(rpc::WishlistRpc::new(app.clone())))
            .add_service(CartServiceServer::new(rpc::CartRpc::new(app.clone())))
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
            .bind()
            .await?;
        Ok(Self { server, app })
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sessions = self.app.sessions.clone();
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
