//! Builds the user service from its settings and runs it: the gRPC server, the consumer that
//! removes the cart lines orders bought (`OrderPlaced`), the gauges of its queue, and the purge
//! of old sessions.
//!
//! The broker is not among the dependencies its health reports: accounts, sign-in and carts
//! need none, and a broker outage only delays the removal of bought lines (the consumer waits
//! it out), so it must not take the service out of rotation.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use shop_platform::{
    config::{ConfigError, Env},
    grpc::server::{BoundGrpcServer, GrpcServerBuilder},
    health::Dependency,
    queue::{ConsumedQueueGauges, QueueSpec, WorkQueue},
    service::{Backends, MeshService, ServiceSettings, open_database},
};
use shop_proto::pb::user::{
    cart_service_server::CartServiceServer, user_service_server::UserServiceServer,
    wishlist_service_server::WishlistServiceServer,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{bought, catalog, config::UserConfig, context::Context, grpc, migration};

/// How often expired refresh tokens and old sessions are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3_600);

/// The running user service.
#[derive(Debug)]
pub struct UserService {
    server: BoundGrpcServer,
    context: Context,
    queue: Arc<dyn WorkQueue>,
    /// The queue of `OrderPlaced`.
    placed: String,
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
        let spec = QueueSpec::new(&config.queues.placed).with_dead_letter_max_length(config.dead_letter_max_length);
        backends
            .queue
            .declare(&spec)
            .await
            .context("declaring the queue of placed orders")?;
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
        Ok(Self {
            server,
            context,
            queue: backends.queue,
            placed: config.queues.placed,
        })
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Background work stops with the server, whether it stopped on shutdown or failed.
        let background = shutdown.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(bought::run(
            self.context.db.clone(),
            Arc::clone(&self.queue),
            self.placed.clone(),
            background.clone(),
        ));
        let gauges = ConsumedQueueGauges::new(Arc::clone(&self.queue), [self.placed.clone()]);
        tasks.spawn(gauges.run(background.clone()));
        tasks.spawn(purge(self.context.clone(), background.clone()));
        let served = self.server.serve(shutdown).await;
        background.cancel();
        while let Some(joined) = tasks.join_next().await {
            joined.context("a user service task panicked")?;
        }
        served
    }
}

/// Deletes expired refresh tokens and old sessions every [`PURGE_INTERVAL`] until `stop`.
async fn purge(context: Context, stop: CancellationToken) {
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => match context.sessions.purge_expired().await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "old sessions deleted"),
                Err(error) => tracing::warn!(%error, "purging old sessions failed"),
            },
        }
    }
}
