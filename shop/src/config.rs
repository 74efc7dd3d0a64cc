//! The configuration of the one-process run, from the environment of API.md "Operating the
//! one-process run", validated at start.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use shop_platform::{
    config::{ConfigError, Env, SecretString},
    service::{BackendUrls, data_dir},
    telemetry::TelemetryConfig,
};

/// Everything the `shop` binary reads from the environment.
#[derive(Debug)]
pub struct ShopConfig {
    /// Where the REST gateway listens (`SHOP_HTTP_ADDR`, default 127.0.0.1:8080).
    pub http_addr: SocketAddr,
    /// Where the user service's gRPC listens (`SHOP_USER_GRPC_ADDR`, default 127.0.0.1:50051).
    pub user_grpc_addr: SocketAddr,
    /// Where the catalog service's gRPC listens (`SHOP_CATALOG_GRPC_ADDR`, default 127.0.0.1:50052).
    pub catalog_grpc_addr: SocketAddr,
    /// Where the order service's gRPC listens (`SHOP_ORDER_GRPC_ADDR`, default 127.0.0.1:50053).
    pub order_grpc_addr: SocketAddr,
    /// Where the embedded stores live (`SHOP_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Database, cache and queue (`DATABASE_URL`, `REDIS_URL`, `AMQP_URL`).
    pub backends: BackendUrls,
    /// Where verification mails go (`SMTP_URL`; `log://` writes them to the log).
    pub smtp_url: String,
    /// Shipping happens this long after payment (`SHOP_SHIP_AFTER`, default 1d).
    pub ship_after: Duration,
    /// Delivery happens this long after shipping (`SHOP_DELIVER_AFTER`, default 1d).
    pub deliver_after: Duration,
    /// Orders can be cancelled this long after placing (`SHOP_CANCEL_WINDOW`, default 24h).
    pub cancel_window: Duration,
    /// Items can be returned this long after delivery (`SHOP_RETURN_WINDOW`, default 1d).
    pub return_window: Duration,
    /// The admin account created at start if absent (`SHOP_ADMIN_EMAIL`, `SHOP_ADMIN_PASSWORD`).
    pub admin: Option<(String, SecretString)>,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

const DAY: Duration = Duration::from_secs(86_400);

impl ShopConfig {
    /// Reads and validates the configuration.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let data_dir = data_dir(env);
        let admin = match (env.var("SHOP_ADMIN_EMAIL"), env.secret("SHOP_ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => Some((email, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "SHOP_ADMIN_PASSWORD",
                    "must be set with SHOP_ADMIN_EMAIL",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "SHOP_ADMIN_EMAIL",
                    "must be set with SHOP_ADMIN_PASSWORD",
                ));
            }
        };
        Ok(Self {
            http_addr: env.addr_or("SHOP_HTTP_ADDR", "127.0.0.1:8080")?,
            user_grpc_addr: env.addr_or("SHOP_USER_GRPC_ADDR", "127.0.0.1:50051")?,
            catalog_grpc_addr: env.addr_or("SHOP_CATALOG_GRPC_ADDR", "127.0.0.1:50052")?,
            order_grpc_addr: env.addr_or("SHOP_ORDER_GRPC_ADDR", "127.0.0.1:50053")?,
            backends: BackendUrls::from_env(env, &data_dir)?,
            smtp_url: env.url_or("SMTP_URL", "log://", &["smtp", "smtps", "log"])?,
            ship_after: env.duration_or("SHOP_SHIP_AFTER", DAY)?,
            deliver_after: env.duration_or("SHOP_DELIVER_AFTER", DAY)?,
            cancel_window: env.duration_or("SHOP_CANCEL_WINDOW", DAY)?,
            return_window: env.duration_or("SHOP_RETURN_WINDOW", DAY)?,
            admin,
            telemetry: TelemetryConfig::from_env(env, "shop")?,
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
        let config = ShopConfig::from_env(&MapEnv::from_pairs([("SHOP_DATA_DIR", "/tmp/x")])).ok();
        let config = config.map(|c| (c.http_addr.to_string(), c.backends.cache, c.ship_after, c.cancel_window));
        assert_eq!(config, Some(("127.0.0.1:8080".into(), "memory://".into(), DAY, DAY)));
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
