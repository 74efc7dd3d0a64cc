//! The whole shop mesh in one process on loopback: every service and the REST gateway, sharing
//! one set of backends (embedded by default: SQLite files, in-process cache, and the in-process
//! queue kept in a SQLite file). It is
//! the newcomer's first command and the tests' in-process harness; in Kubernetes each service
//! runs as its own binary instead.

pub mod config;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use shop_catalog::CatalogService;
use shop_gateway::{Gateway, GatewayConfig};
use shop_order::OrderService;
use shop_platform::{
    grpc::{
        client::Target,
        mesh::{CATALOG, GATEWAY, MeshIdentity, ORDER, USER},
    },
    service::{Backends, MeshService, ServiceSettings},
};
use shop_user::UserService;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::ShopConfig;

/// Where each part of the running mesh listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The REST gateway.
    pub http: SocketAddr,
    /// The user service's gRPC.
    pub user: SocketAddr,
    /// The catalog service's gRPC.
    pub catalog: SocketAddr,
    /// The order service's gRPC.
    pub order: SocketAddr,
}

/// The mesh, built and bound, not yet serving.
#[derive(Debug)]
pub struct Mesh {
    user: UserService,
    catalog: CatalogService,
    order: OrderService,
    gateway: Gateway,
    addresses: Addresses,
}

impl Mesh {
    /// Opens the backends, then builds and binds every service and the gateway.
    pub async fn build(config: &ShopConfig) -> anyhow::Result<Self> {
        let backends = Backends::open(&config.backends).await?;
        let cache = Arc::clone(&backends.cache);
        // Keys made up for this run: its loopback ports are open to every local user, so the
        // services check who calls as in a cluster.
        let identities = MeshIdentity::ephemeral_mesh(&[GATEWAY, USER, CATALOG, ORDER], &config.mesh)
            .map_err(|reason| anyhow::anyhow!("setting up the mesh identities: {reason}"))?;
        let identity = |name: &str| {
            identities
                .get(name)
                .cloned()
                .with_context(|| format!("no mesh identity for {name}"))
        };
        let settings = |name: &str, grpc_addr| -> anyhow::Result<ServiceSettings> {
            Ok(ServiceSettings {
                grpc_addr,
                database: shop_platform::db::DatabaseConfig::new(config.backends.database.clone(), name),
                health: config.health.clone(),
                mesh: identity(name)?,
                grpc_limits: config.grpc_limits,
                in_process: config.in_process_calls,
                outbox: config.outbox.clone(),
            })
        };
        let catalog = CatalogService::build(
            settings(CatalogService::NAME, config.catalog_grpc_addr)?,
            config.catalog.clone(),
            backends.clone(),
        )
        .await
        .context("starting the catalog service")?;
        // Services reach each other at the ports they actually bound (port 0 in tests).
        let target = |addr: SocketAddr| Target::parse(&format!("http://{addr}"));
        let mut user_config = config.user.clone();
        user_config.catalog_target = target(catalog.grpc_addr())?;
        if user_config.signing_keys.is_none() {
            // Without configured keys, the key is kept in the data directory: a restart must
            // not log every customer out.
            let path = config.data_dir.join(shop_user::key_file::FILE_NAME);
            user_config.signing_keys = Some(shop_user::key_file::load_or_create(&path)?);
        }
        let user = UserService::build(
            settings(UserService::NAME, config.user_grpc_addr)?,
            user_config,
            backends.clone(),
        )
        .await
        .context("starting the user service")?;
        let mut order_config = config.order.clone();
        order_config.catalog = target(catalog.grpc_addr())?;
        order_config.user = target(user.grpc_addr())?;
        let order = OrderService::build(
            settings(OrderService::NAME, config.order_grpc_addr)?,
            order_config,
            backends,
        )
        .await
        .context("starting the order service")?;

        let gateway_config = GatewayConfig {
            user: target(user.grpc_addr())?,
            catalog: target(catalog.grpc_addr())?,
            order: target(order.grpc_addr())?,
            mesh: identity(GATEWAY)?,
            ..config.gateway.clone()
        };
        let gateway = Gateway::build(&gateway_config, cache)
            .await
            .context("starting the gateway")?;
        let addresses = Addresses {
            http: gateway.local_addr()?,
            user: user.grpc_addr(),
            catalog: catalog.grpc_addr(),
            order: order.grpc_addr(),
        };
        Ok(Self {
            user,
            catalog,
            order,
            gateway,
            addresses,
        })
    }

    /// Where everything listens.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// Serves until `shutdown` is cancelled; if any part fails, the others are stopped too.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut parts = JoinSet::new();
        parts.spawn(named("user", self.user.run(shutdown.clone())));
        parts.spawn(named("catalog", self.catalog.run(shutdown.clone())));
        parts.spawn(named("order", self.order.run(shutdown.clone())));
        parts.spawn(named("gateway", self.gateway.run(shutdown.clone())));
        let mut outcome = Ok(());
        while let Some(joined) = parts.join_next().await {
            let result = joined.context("a mesh task panicked").and_then(|result| result);
            if let Err(error) = result {
                tracing::error!(error = format!("{error:#}"), "stopping the mesh");
                shutdown.cancel();
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
        outcome
    }
}

async fn named(name: &'static str, part: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    part.await.with_context(|| format!("{name} stopped"))
}
