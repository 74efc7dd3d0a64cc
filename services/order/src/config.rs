//! The order service's own settings.

use std::time::Duration;

use shop_platform::config::{ConfigError, Env};

const DAY: Duration = Duration::from_secs(86_400);

/// Settings of the order service, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderConfig {
    /// Paid items ship this long after payment (`SHOP_SHIP_AFTER` [1d]).
    pub ship_after: Duration,
    /// Shipped items are delivered this long after shipping (`SHOP_DELIVER_AFTER` [1d]).
    pub deliver_after: Duration,
    /// Orders can be cancelled this long after placing (`SHOP_CANCEL_WINDOW` [24h]).
    pub cancel_window: Duration,
    /// Items can be returned this long after delivery (`SHOP_RETURN_WINDOW` [1d]).
    pub return_window: Duration,
}

impl OrderConfig {
    /// Reads and validates the settings.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            ship_after: env.duration_or("SHOP_SHIP_AFTER", DAY)?,
            deliver_after: env.duration_or("SHOP_DELIVER_AFTER", DAY)?,
            cancel_window: env.duration_or("SHOP_CANCEL_WINDOW", DAY)?,
            return_window: env.duration_or("SHOP_RETURN_WINDOW", DAY)?,
        })
    }
}
