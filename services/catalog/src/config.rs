//! The catalog service's own settings, from the environment (defaults in brackets):
//!
//! - `SHOP_CATALOG_RESERVE_QUEUE` [stock.reserve], `SHOP_CATALOG_RELEASE_QUEUE` [stock.release],
//!   `SHOP_CATALOG_RESULTS_QUEUE` [stock.results]: the queues of shop/events/v1/events.proto;
//! - `SHOP_CATALOG_STOCK_WORKERS` [2]: consumers per queue in this process (each replica runs
//!   as many; any number of replicas may run);
//! - `SHOP_CATALOG_STOCK_BATCH` [200]: most deliveries applied in one transaction;
//! - `SHOP_CATALOG_STOCK_LINGER` [5ms]: how long a batch waits for more deliveries after its
//!   first one;
//! - `SHOP_RETENTION_RELEASES` [30d]: how long applied releases of fully given-back orders are
//!   kept (see `crate::retention`), beside the platform's retention settings.

use std::time::Duration;

use shop_platform::{
    config::{ConfigError, Env},
    retention::{self, RetentionSettings},
};
pub use shop_proto::queues::StockQueues;

/// Settings of the catalog service, from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogConfig {
    /// The reservation worker's settings.
    pub stock: StockConfig,
    /// How long rows that have done their job are kept.
    pub retention: CatalogRetention,
}

/// How long the catalog keeps rows that have done their job (see `crate::retention`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogRetention {
    /// The platform's ages (outbox, inbox), the sweep interval and the dead-letter bound.
    pub platform: RetentionSettings,
    /// Releases of orders with nothing left to give back are kept this long after they were
    /// applied (`SHOP_RETENTION_RELEASES` [30d]).
    pub releases: Duration,
}

impl Default for CatalogRetention {
    fn default() -> Self {
        Self {
            platform: RetentionSettings::default(),
            releases: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Settings of the stock reservation worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockConfig {
    /// The stock queues: ReserveStock and ReleaseStock arrive on `reserve` and `release`;
    /// StockReserved, StockRejected and StockReleased go to `results` (through the outbox).
    pub queues: StockQueues,
    /// Consumers per queue in this process.
    pub workers: usize,
    /// Most deliveries applied in one transaction.
    pub batch_size: usize,
    /// How long a batch waits for more deliveries after its first one.
    pub linger: Duration,
}

impl Default for StockConfig {
    fn default() -> Self {
        Self {
            queues: StockQueues::default(),
            workers: 2,
            batch_size: 200,
            linger: Duration::from_millis(5),
        }
    }
}

impl StockConfig {
    /// The unacknowledged deliveries a consumer may hold: two batches, so that the next batch
    /// is already on its way while one commits.
    pub fn prefetch(&self) -> u16 {
        u16::try_from(self.batch_size.saturating_mul(2)).unwrap_or(u16::MAX)
    }
}

impl CatalogConfig {
    /// Reads and validates the settings.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let defaults = StockConfig::default();
        let stock = StockConfig {
            queues: StockQueues::from_vars(|key| env.var(key))
                .map_err(|bad| ConfigError::new(bad.variable, bad.reason))?,
            workers: in_range(env, "SHOP_CATALOG_STOCK_WORKERS", defaults.workers, 1, 64)?,
            batch_size: in_range(env, "SHOP_CATALOG_STOCK_BATCH", defaults.batch_size, 1, 5_000)?,
            linger: env.duration_or("SHOP_CATALOG_STOCK_LINGER", defaults.linger)?,
        };
        if stock.linger > Duration::from_secs(1) {
            return Err(ConfigError::new(
                "SHOP_CATALOG_STOCK_LINGER",
                "at most 1s: a batch must not hold deliveries longer",
            ));
        }
        let retention = CatalogRetention {
            platform: RetentionSettings::from_env(env)?,
            releases: retention::age(env, "SHOP_RETENTION_RELEASES", CatalogRetention::default().releases)?,
        };
        Ok(Self { stock, retention })
    }
}

fn in_range(env: &impl Env, key: &str, default: usize, min: usize, max: usize) -> Result<usize, ConfigError> {
    let value = env.parse_or(key, default)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(key, format!("{value} is not between {min} and {max}")))
    }
}

#[cfg(test)]
mod tests {
    use shop_platform::config::MapEnv;

    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let config = CatalogConfig::from_env(&MapEnv::default()).ok();
        assert_eq!(config, Some(CatalogConfig::default()));
        assert_eq!(StockConfig::default().prefetch(), 400);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        for (key, value) in [
            ("SHOP_CATALOG_STOCK_WORKERS", "0"),
            ("SHOP_CATALOG_STOCK_BATCH", "lots"),
            ("SHOP_CATALOG_STOCK_LINGER", "2s"),
            ("SHOP_CATALOG_RESERVE_QUEUE", "no spaces"),
            ("SHOP_CATALOG_RESULTS_QUEUE", "stock.reserve"),
        ] {
            let error = CatalogConfig::from_env(&MapEnv::from_pairs([(key, value)])).err();
            assert_eq!(error.map(|e| e.key).as_deref(), Some(key), "{key}={value}");
        }
    }
}
