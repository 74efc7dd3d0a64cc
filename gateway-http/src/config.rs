//! The gateway's configuration from the environment.

use std::{net::SocketAddr, time::Duration};

use shop_platform::{
    config::{ConfigError, Env},
    grpc::client::{ClientOptions, Target},
};

/// Where the gateway listens and where the services are.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// `SHOP_HTTP_ADDR` [0.0.0.0:8080].
    pub http_addr: SocketAddr,
    /// `SHOP_USER_TARGET` [http://127.0.0.1:50051]; in a cluster
    /// `dns://user.shop.svc.cluster.local:50051`.
    pub user: Target,
    /// `SHOP_CATALOG_TARGET` [http://127.0.0.1:50052].
    pub catalog: Target,
    /// `SHOP_ORDER_TARGET` [http://127.0.0.1:50053].
    pub order: Target,
    /// Deadlines and discovery settings of the service channels.
    pub client: ClientOptions,
    /// How long `/readyz` waits for each service (`SHOP_READINESS_TIMEOUT` [1s]).
    pub readiness_timeout: Duration,
}

impl GatewayConfig {
    /// Reads the configuration; `default_addr` is the listen address when `SHOP_HTTP_ADDR` is unset.
    pub fn from_env(env: &impl Env, default_addr: &str) -> Result<Self, ConfigError> {
        let target = |key: &str, default: &str| {
            let raw = env.var(key).unwrap_or_else(|| default.to_owned());
            Target::parse(&raw).map_err(|error| ConfigError::new(key, error.to_string()))
        };
        Ok(Self {
            http_addr: env.addr_or("SHOP_HTTP_ADDR", default_addr)?,
            user: target("SHOP_USER_TARGET", "http://127.0.0.1:50051")?,
            catalog: target("SHOP_CATALOG_TARGET", "http://127.0.0.1:50052")?,
            order: target("SHOP_ORDER_TARGET", "http://127.0.0.1:50053")?,
            client: ClientOptions::default(),
            readiness_timeout: env.duration_or("SHOP_READINESS_TIMEOUT", Duration::from_secs(1))?,
        })
    }
}
