//! The configuration of the one-process run, from the environment (the README's
//! "Configuration" table), validated at start.

use std::{net::SocketAddr, path::PathBuf};

use shop_catalog::{CatalogConfig, CatalogService};
use shop_gateway::GatewayConfig;
use shop_order::{OrderConfig, OrderService};
use shop_platform::{
    config::{ConfigError, Env},
    grpc::mesh::MeshSettings,
    health::HealthSettings,
    service::{BackendUrls, MeshService, data_dir},
    telemetry::{TelemetryConfig, metrics},
};
use shop_user::{UserConfig, UserService};

/// Everything the `shop` binary reads from the environment.
#[derive(Debug)]
pub struct ShopConfig {
    /// The REST gateway's settings: where it listens (`SHOP_HTTP_ADDR`, default
    /// 127.0.0.1:8080) and its edge limits (`SHOP_RATE_LIMIT_PER_IP`, `SHOP_BODY_LIMIT`, …). Its
    /// service targets are set to the services' actual addresses at start.
    pub gateway: GatewayConfig,
    /// Where the user service's gRPC listens (`SHOP_USER_GRPC_ADDR`, default 127.0.0.1:50051).
    pub user_grpc_addr: SocketAddr,
    /// Where the catalog service's gRPC listens (`SHOP_CATALOG_GRPC_ADDR`, default 127.0.0.1:50052).
    pub catalog_grpc_addr: SocketAddr,
    /// Where the order service's gRPC listens (`SHOP_ORDER_GRPC_ADDR`, default 127.0.0.1:50053).
    pub order_grpc_addr: SocketAddr,
    /// Where the embedded stores live (`SHOP_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Database, cache and queue (`DATABASE_URL`, `REDIS_URL`, `AMQP_URL`); by default SQLite
    /// files, the in-process cache, and the in-process queue kept in `SHOP_DATA_DIR/queue.db`.
    pub backends: BackendUrls,
    /// The user service's own settings (`SMTP_URL`, `SHOP_ADMIN_EMAIL`, …).
    pub user: UserConfig,
    /// The catalog service's own settings.
    pub catalog: CatalogConfig,
    /// The order service's own settings (`SHOP_SHIP_AFTER`, `SHOP_CANCEL_WINDOW`, …).
    pub order: OrderConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// How the services probe their backends for their health status (`SHOP_HEALTH_INTERVAL`,
    /// `SHOP_HEALTH_TIMEOUT`).
    pub health: HealthSettings,
    /// Whether the gateway and the services call each other in process rather than over
    /// loopback gRPC (`SHOP_IN_PROCESS_CALLS`, default true): the same authentication, limits,
    /// spans and metrics, without HTTP/2 and sockets. `false` runs every call over the network,
    /// as the separate binaries do.
    pub in_process_calls: bool,
    /// The services' gRPC limits (`SHOP_GRPC_*`).
    pub grpc_limits: shop_platform::grpc::server::GrpcLimits,
    /// How the services' outbox relays publish (`SHOP_OUTBOX_BUNDLE_SIZE`).
    pub outbox: shop_platform::outbox::RelayOptions,
    /// The mesh: every member gets a key made up at start; `SHOP_MESH_TRUST` adds the keys of
    /// internal teams' clients, `SHOP_MESH_GRANTS` their grants.
    pub mesh: MeshSettings,
}

impl ShopConfig {
    /// Reads and validates the configuration.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let data_dir = data_dir(env);
        Ok(Self {
            gateway: GatewayConfig::from_env(env, "127.0.0.1:8080")?,
            user_grpc_addr: env.addr_or("SHOP_USER_GRPC_ADDR", "127.0.0.1:50051")?,
            catalog_grpc_addr: env.addr_or("SHOP_CATALOG_GRPC_ADDR", "127.0.0.1:50052")?,
            order_grpc_addr: env.addr_or("SHOP_ORDER_GRPC_ADDR", "127.0.0.1:50053")?,
            backends: BackendUrls::embedded_from_env(env, &data_dir)?,
            user: UserService::config_from_env(env)?,
            catalog: CatalogService::config_from_env(env)?,
            order: OrderService::config_from_env(env)?,
            // The whole mesh's metrics on one endpoint, on loopback by default as the rest.
            telemetry: TelemetryConfig {
                metrics_addr: metrics::addr_from_env(env, "127.0.0.1:9464")?,
                ..TelemetryConfig::from_env(env, "shop")?
            },
            health: HealthSettings::from_env(env)?,
            grpc_limits: shop_platform::grpc::server::GrpcLimits::from_env(env)?,
            outbox: shop_platform::outbox::RelayOptions::from_env(env)?,
            in_process_calls: env.parse_or("SHOP_IN_PROCESS_CALLS", true)?,
            mesh: MeshSettings::from_env(env)?,
            data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use shop_platform::config::MapEnv;

    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let config = ShopConfig::from_env(&MapEnv::from_pairs([("SHOP_DATA_DIR", "/var/lib/shop")])).ok();
        let day = std::time::Duration::from_secs(86_400);
        let config = config.map(|c| {
            (
                c.gateway.http_addr.to_string(),
                c.backends.cache.url,
                c.backends.queue,
                c.order.ship_after,
                c.order.cancel_window,
            )
        });
        assert_eq!(
            config,
            Some((
                "127.0.0.1:8080".into(),
                "memory://".into(),
                "sqlite:///var/lib/shop/queue.db".into(),
                day,
                day
            ))
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        for (key, value) in [
            ("SHOP_HTTP_ADDR", "localhost"),
            ("SHOP_SHIP_AFTER", "soon"),
            ("SHOP_RETURN_WINDOW", "1w"),
            ("SMTP_URL", "ftp://mail"),
            ("DATABASE_URL", "mysql://db"),
            ("SHOP_ADMIN_EMAIL", "root@example.com"),
        ] {
            let error = ShopConfig::from_env(&MapEnv::from_pairs([(key, value)])).err();
            let named = error.as_ref().map(|e| e.key.as_str());
            assert!(
                named == Some(key) || (key == "SHOP_ADMIN_EMAIL" && named == Some("SHOP_ADMIN_PASSWORD")),
                "{key}={value}: {error:?}"
            );
        }
    }
}
