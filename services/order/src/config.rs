//! The order service's own settings.

use std::time::Duration;

use shop_platform::{
    config::{ConfigError, Env},
    grpc::client::{ClientOptions, Target},
    retention::{self, RetentionSettings},
};
use shop_proto::queues::BadQueueName;

const DAY: Duration = Duration::from_secs(86_400);

/// Settings of the order service, from the environment.
#[derive(Clone, Debug)]
pub struct OrderConfig {
    /// Paid items ship this long after payment (`SHOP_SHIP_AFTER` [1d]).
    pub ship_after: Duration,
    /// Shipped items are delivered this long after shipping (`SHOP_DELIVER_AFTER` [1d]).
    pub deliver_after: Duration,
    /// Orders can be cancelled this long after placing (`SHOP_CANCEL_WINDOW` [24h]).
    pub cancel_window: Duration,
    /// Items can be returned this long after delivery (`SHOP_RETURN_WINDOW` [1d]).
    pub return_window: Duration,
    /// The catalog, for price snapshots (`SHOP_CATALOG_TARGET` [http://127.0.0.1:50052]).
    pub catalog: Target,
    /// How long the catalog's answer about a product (name, price, for sale or not, stock) is
    /// reused by later orders (`SHOP_ORDER_PRODUCT_TTL` [1s], at most 1m; `0s` asks for every
    /// order): the freshness the product pages already have at the edge (`SHOP_EDGE_CACHE_TTL`).
    /// An order for more than the answer's stock is rejected without a reservation.
    pub product_ttl: Duration,
    /// The user service, for carts (`SHOP_USER_TARGET` [http://127.0.0.1:50051]).
    pub user: Target,
    /// How the catalog and user clients connect and time their calls.
    pub client: ClientOptions,
    /// The queues shared with the catalog's stock worker.
    pub queues: StockQueues,
    /// The queue of OrderPlaced, which the user service consumes (`SHOP_ORDER_PLACED_QUEUE`
    /// [orders.placed]; not one of the stock queues).
    pub order_queues: OrderQueues,
    /// Stock result consumers in this process (`SHOP_ORDER_RESULT_CONSUMERS` [2], 1 to 64; on
    /// SQLite, which has one writer at a time, always 1).
    pub result_consumers: usize,
    /// How often the shipment scheduler looks for due orders (`SHOP_ORDER_SHIPMENT_INTERVAL` [1s]);
    /// `None` runs no scheduler loop (tests drive it by hand).
    pub shipment_interval: Option<Duration>,
    /// The order total (in minor units) the built-in payment provider declines, a test
    /// trigger (`SHOP_PAYMENT_DECLINE_AMOUNT` [off]; e.g. `402`).
    pub decline_amount: Option<i64>,
    /// How long one call to the payment provider may take before it counts as failed and is
    /// retried later (`SHOP_PAYMENT_TIMEOUT` [10s]).
    pub payment_timeout: Duration,
    /// How the reconciler treats orders left `pending`.
    pub reconcile: ReconcileConfig,
    /// How long rows that have done their job are kept.
    pub retention: OrderRetention,
}

/// How long the order service keeps rows that have done their job (see `crate::retention`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRetention {
    /// The platform's ages (outbox, inbox), the sweep interval and the dead-letter bound.
    pub platform: RetentionSettings,
    /// Idempotency keys are kept this long after they were first used
    /// (`SHOP_RETENTION_IDEMPOTENCY` [7d]); a retry after that places a new order.
    pub idempotency_keys: Duration,
    /// Finished payment tasks (done or declined) are kept this long after they finished
    /// (`SHOP_RETENTION_PAYMENT_TASKS` [30d]).
    pub payment_tasks: Duration,
}

impl Default for OrderRetention {
    fn default() -> Self {
        Self {
            platform: RetentionSettings::default(),
            idempotency_keys: 7 * DAY,
            payment_tasks: 30 * DAY,
        }
    }
}

impl OrderRetention {
    /// Reads and validates the ages.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            platform: RetentionSettings::from_env(env)?,
            idempotency_keys: retention::age(env, "SHOP_RETENTION_IDEMPOTENCY", defaults.idempotency_keys)?,
            payment_tasks: retention::age(env, "SHOP_RETENTION_PAYMENT_TASKS", defaults.payment_tasks)?,
        })
    }
}

/// What the reconciler does about orders still waiting for the catalog's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// How often it looks (`SHOP_ORDER_RECONCILE_INTERVAL` [5s]); `None` runs no loop (tests
    /// drive it by hand).
    pub interval: Option<Duration>,
    /// A pending order unanswered this long has its reservation asked again, and again after
    /// each such period (`SHOP_ORDER_PENDING_RETRY_AFTER` [30s]).
    pub retry_after: Duration,
    /// A pending order unanswered this long is rejected (`reservation_timeout`) and whatever
    /// was reserved for it released (`SHOP_ORDER_PENDING_TIMEOUT` [15m]).
    pub give_up_after: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(5)),
            retry_after: Duration::from_secs(30),
            give_up_after: Duration::from_secs(15 * 60),
        }
    }
}

pub use shop_proto::queues::{OrderQueues, StockQueues};

impl OrderConfig {
    /// Reads and validates the settings.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let target = |key: &str, default: &str| {
            let raw = env.var(key).unwrap_or_else(|| default.to_owned());
            Target::parse(&raw).map_err(|error| ConfigError::new(key, error.to_string()))
        };
        let bad_queue = |bad: BadQueueName| ConfigError::new(bad.variable, bad.reason);
        let queues = StockQueues::from_vars(|key| env.var(key)).map_err(bad_queue)?;
        let order_queues = OrderQueues::from_vars(|key| env.var(key))
            .and_then(|order_queues| order_queues.apart_from(&queues))
            .map_err(bad_queue)?;
        let interval = env.duration_or("SHOP_ORDER_SHIPMENT_INTERVAL", Duration::from_secs(1))?;
        if interval.is_zero() {
            return Err(ConfigError::new("SHOP_ORDER_SHIPMENT_INTERVAL", "must be positive"));
        }
        let consumers = env.parse_or("SHOP_ORDER_RESULT_CONSUMERS", 2usize)?;
        if !(1..=64).contains(&consumers) {
            return Err(ConfigError::new(
                "SHOP_ORDER_RESULT_CONSUMERS",
                format!("{consumers} is not between 1 and 64"),
            ));
        }
        let product_ttl = env.duration_or("SHOP_ORDER_PRODUCT_TTL", Duration::from_secs(1))?;
        if product_ttl > Duration::from_secs(60) {
            return Err(ConfigError::new("SHOP_ORDER_PRODUCT_TTL", "must be at most 1m"));
        }
        Ok(Self {
            ship_after: env.duration_or("SHOP_SHIP_AFTER", DAY)?,
            deliver_after: env.duration_or("SHOP_DELIVER_AFTER", DAY)?,
            cancel_window: env.duration_or("SHOP_CANCEL_WINDOW", DAY)?,
            return_window: env.duration_or("SHOP_RETURN_WINDOW", DAY)?,
            catalog: target("SHOP_CATALOG_TARGET", "http://127.0.0.1:50052")?,
            product_ttl,
            user: target("SHOP_USER_TARGET", "http://127.0.0.1:50051")?,
            client: ClientOptions::default(),
            queues,
            order_queues,
            result_consumers: consumers,
            shipment_interval: Some(interval),
            decline_amount: decline_amount(env)?,
            payment_timeout: positive(env, "SHOP_PAYMENT_TIMEOUT", Duration::from_secs(10))?,
            reconcile: reconcile(env)?,
            retention: OrderRetention::from_env(env)?,
        })
    }
}

fn positive(env: &impl Env, key: &str, default: Duration) -> Result<Duration, ConfigError> {
    let value = env.duration_or(key, default)?;
    if value.is_zero() {
        return Err(ConfigError::new(key, "must be positive"));
    }
    Ok(value)
}

fn reconcile(env: &impl Env) -> Result<ReconcileConfig, ConfigError> {
    let defaults = ReconcileConfig::default();
    let interval = defaults.interval.unwrap_or(Duration::from_secs(5));
    let config = ReconcileConfig {
        interval: Some(positive(env, "SHOP_ORDER_RECONCILE_INTERVAL", interval)?),
        retry_after: positive(env, "SHOP_ORDER_PENDING_RETRY_AFTER", defaults.retry_after)?,
        give_up_after: positive(env, "SHOP_ORDER_PENDING_TIMEOUT", defaults.give_up_after)?,
    };
    if config.give_up_after <= config.retry_after {
        return Err(ConfigError::new(
            "SHOP_ORDER_PENDING_TIMEOUT",
            "must be longer than SHOP_ORDER_PENDING_RETRY_AFTER",
        ));
    }
    Ok(config)
}

fn decline_amount(env: &impl Env) -> Result<Option<i64>, ConfigError> {
    const KEY: &str = "SHOP_PAYMENT_DECLINE_AMOUNT";
    match env.var(KEY) {
        // Off unless asked for: a real order may well total 402.
        None => Ok(None),
        Some(raw) if raw.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(amount) if amount >= 0 => Ok(Some(amount)),
            _ => Err(ConfigError::new(
                KEY,
                format!("{raw:?} is neither an amount in minor units nor `off`"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use shop_platform::config::MapEnv;

    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let config = OrderConfig::from_env(&MapEnv::default()).ok();
        let config = config.map(|c| {
            (
                c.ship_after,
                c.cancel_window,
                c.catalog.to_string(),
                c.queues,
                c.order_queues,
                c.shipment_interval,
                c.decline_amount,
                c.product_ttl,
            )
        });
        assert_eq!(
            config,
            Some((
                DAY,
                DAY,
                Target::parse("http://127.0.0.1:50052")
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                StockQueues::default(),
                OrderQueues::default(),
                Some(Duration::from_secs(1)),
                None,
                Duration::from_secs(1),
            ))
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (key, value) in [
            ("SHOP_PAYMENT_DECLINE_AMOUNT", "-3"),
            ("SHOP_PAYMENT_DECLINE_AMOUNT", "lots"),
            ("SHOP_CATALOG_TARGET", "ftp://x:1"),
            ("SHOP_CATALOG_RESULTS_QUEUE", "stock results"),
            ("SHOP_ORDER_SHIPMENT_INTERVAL", "0s"),
            ("SHOP_ORDER_RESULT_CONSUMERS", "0"),
            ("SHOP_PAYMENT_TIMEOUT", "0s"),
            ("SHOP_ORDER_PENDING_TIMEOUT", "10s"),
            ("SHOP_CATALOG_RESULTS_QUEUE", "stock.reserve"),
            ("SHOP_ORDER_PLACED_QUEUE", "orders placed"),
            ("SHOP_ORDER_PLACED_QUEUE", "stock.release"),
            ("SHOP_RETENTION_IDEMPOTENCY", "0d"),
            ("SHOP_RETENTION_PAYMENT_TASKS", "forever"),
            ("SHOP_RETENTION_INBOX", "5m"),
            ("SHOP_ORDER_PRODUCT_TTL", "2m"),
            ("SHOP_ORDER_PRODUCT_TTL", "soon"),
        ] {
            let error = OrderConfig::from_env(&MapEnv::from_pairs([(key, value)])).err();
            assert_eq!(error.map(|e| e.key).as_deref(), Some(key), "{key}={value}");
        }
    }

    #[test]
    fn the_decline_trigger_is_off_unless_configured() {
        let config = OrderConfig::from_env(&MapEnv::from_pairs([("SHOP_PAYMENT_DECLINE_AMOUNT", "off")])).ok();
        assert_eq!(config.map(|c| c.decline_amount), Some(None));
        let config = OrderConfig::from_env(&MapEnv::from_pairs([("SHOP_PAYMENT_DECLINE_AMOUNT", "402")])).ok();
        assert_eq!(config.map(|c| c.decline_amount), Some(Some(402)));
    }
}
