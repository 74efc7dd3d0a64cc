//! Where the deployment is: the same variables the services read. `AMQP_URL` and
//! `DATABASE_URL` have no default here (an operator tool must not quietly look at an in-process
//! queue or an empty SQLite file); each is required by the commands that use it.

use shop_platform::{
    config::{ConfigError, Env},
    telemetry::TelemetryConfig,
};
use shop_proto::queues::{OrderQueues, StockQueues};

/// The tool's settings.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// The deployment's RabbitMQ (`AMQP_URL`), for the `dlq` commands.
    amqp_url: Option<String>,
    /// The deployment's PostgreSQL database (`DATABASE_URL`), for the `orders` commands.
    database_url: Option<String>,
    /// The stock queues, whose dead-letter queues `dlq list` counts, named as the services
    /// name them.
    pub stock_queues: StockQueues,
    /// The queue of OrderPlaced, whose dead-letter queue `dlq list` counts too.
    pub order_queues: OrderQueues,
    /// Log lines (to standard error, one per action).
    pub telemetry: TelemetryConfig,
}

impl AdminConfig {
    /// Reads and validates the settings.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let optional_url = |key: &str, schemes: &[&str]| match env.var(key) {
            None => Ok(None),
            Some(_) => env.url_or(key, "", schemes).map(Some),
        };
        let mut telemetry = TelemetryConfig::from_env(env, "shop-admin")?;
        telemetry.log_to_stderr = true;
        // A command that runs and exits serves no metrics.
        telemetry.metrics_addr = None;
        if env.var("RUST_LOG").is_none() {
            // lapin logs every channel the broker closes as an error, and counting a queue
            // that was never declared closes one (404): expected here, and reported as
            // `absent`, so its own lines would only alarm.
            telemetry.filter = "info,lapin=off".to_owned();
        }
        Ok(Self {
            amqp_url: optional_url("AMQP_URL", &["amqp", "amqps"])?,
            database_url: optional_url("DATABASE_URL", &["postgres", "postgresql"])?,
            stock_queues: StockQueues::from_vars(|key| env.var(key))
                .map_err(|bad| ConfigError::new(bad.variable, bad.reason))?,
            order_queues: OrderQueues::from_vars(|key| env.var(key))
                .map_err(|bad| ConfigError::new(bad.variable, bad.reason))?,
            telemetry,
        })
    }

    /// The RabbitMQ URL, which the `dlq` commands need.
    pub fn amqp_url(&self) -> Result<&str, ConfigError> {
        self.amqp_url
            .as_deref()
            .ok_or_else(|| ConfigError::new("AMQP_URL", "not set: the deployment's RabbitMQ (amqp://…) is needed"))
    }

    /// The PostgreSQL URL, which the `orders` commands need.
    pub fn database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_deref().ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                "not set: the deployment's PostgreSQL database (postgres://…) is needed",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use shop_platform::config::MapEnv;

    use super::*;

    #[test]
    fn queues_default_like_the_services_and_follow_their_variables() {
        let config = AdminConfig::from_env(&MapEnv::default()).ok();
        assert_eq!(
            config.as_ref().map(|c| c.stock_queues.clone()),
            Some(StockQueues::default())
        );
        let env = MapEnv::from_pairs([("SHOP_CATALOG_RESULTS_QUEUE", "prod.results")]);
        let queues = AdminConfig::from_env(&env).map(|c| c.stock_queues).unwrap_or_default();
        assert_eq!(queues.results, "prod.results");
        let env = MapEnv::from_pairs([("SHOP_ORDER_PLACED_QUEUE", "prod.placed")]);
        let queues = AdminConfig::from_env(&env).map(|c| c.order_queues).unwrap_or_default();
        assert_eq!(queues.placed, "prod.placed");
    }

    #[test]
    fn backends_are_required_only_when_used_and_checked_when_given() {
        let config = AdminConfig::from_env(&MapEnv::default());
        let missing = config
            .as_ref()
            .map(|c| (c.amqp_url().is_err(), c.database_url().is_err()));
        assert_eq!(missing.ok(), Some((true, true)));

        let env = MapEnv::from_pairs([("AMQP_URL", "memory://"), ("DATABASE_URL", "postgres://h/db")]);
        assert_eq!(
            AdminConfig::from_env(&env).err().map(|e| e.key),
            Some("AMQP_URL".to_owned())
        );
        let env = MapEnv::from_pairs([("DATABASE_URL", "sqlite://shop.db")]);
        assert_eq!(
            AdminConfig::from_env(&env).err().map(|e| e.key),
            Some("DATABASE_URL".to_owned())
        );
        let env = MapEnv::from_pairs([("AMQP_URL", "amqp://h/v"), ("DATABASE_URL", "postgres://h/db")]);
        let config = AdminConfig::from_env(&env);
        let urls = config.as_ref().map(|c| (c.amqp_url().ok(), c.database_url().ok()));
        assert_eq!(urls.ok(), Some((Some("amqp://h/v"), Some("postgres://h/db"))));
    }
}
