//! The queues the `shop.events.v1` messages travel on, named once for both ends, so that both
//! read the names from the same variables with the same rules, here:
//!
//! - [`StockQueues`]: the order service publishes `ReserveStock` and `ReleaseStock` and consumes
//!   the results; the catalog's stock worker does the opposite;
//! - [`OrderQueues`]: the order service publishes `OrderPlaced`; the user service consumes it.

/// The stock queues' names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockQueues {
    /// `ReserveStock`, order → catalog (`SHOP_CATALOG_RESERVE_QUEUE` [stock.reserve]).
    pub reserve: String,
    /// `ReleaseStock`, order → catalog (`SHOP_CATALOG_RELEASE_QUEUE` [stock.release]).
    pub release: String,
    /// `StockReserved`, `StockRejected`, `StockReleased`, catalog → order
    /// (`SHOP_CATALOG_RESULTS_QUEUE` [stock.results]).
    pub results: String,
}

impl Default for StockQueues {
    fn default() -> Self {
        Self {
            reserve: "stock.reserve".into(),
            release: "stock.release".into(),
            results: "stock.results".into(),
        }
    }
}

/// A name the rules refuse: the variable and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadQueueName {
    /// The variable that named it.
    pub variable: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl StockQueues {
    /// The variables naming the reserve, release and results queues, in that order.
    pub const VARIABLES: [&'static str; 3] = [
        "SHOP_CATALOG_RESERVE_QUEUE",
        "SHOP_CATALOG_RELEASE_QUEUE",
        "SHOP_CATALOG_RESULTS_QUEUE",
    ];

    /// The names from `var` (the environment, say), defaults where unset. A name is up to 200
    /// letters, digits, `.`, `_`, `-` or `:` (an AMQP short string with room for the `.dead`
    /// suffix of its dead-letter queue), and the three queues are three different ones.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, BadQueueName> {
        let defaults = Self::default();
        let name = |variable, default| queue_name(&var, variable, default);
        let [reserve, release, results] = Self::VARIABLES;
        let queues = Self {
            reserve: name(reserve, defaults.reserve)?,
            release: name(release, defaults.release)?,
            results: name(results, defaults.results)?,
        };
        if queues.reserve == queues.release || queues.results == queues.reserve || queues.results == queues.release {
            return Err(BadQueueName {
                variable: "SHOP_CATALOG_RESULTS_QUEUE",
                reason: "the reserve, release and results queues must be three different queues".into(),
            });
        }
        Ok(queues)
    }

    /// Names under a prefix (`<prefix>.stock.reserve`, …), so that tests sharing a broker do not
    /// read each other's messages.
    pub fn prefixed(prefix: &str) -> Self {
        let defaults = Self::default();
        Self {
            reserve: format!("{prefix}.{}", defaults.reserve),
            release: format!("{prefix}.{}", defaults.release),
            results: format!("{prefix}.{}", defaults.results),
        }
    }

    /// The three names, to declare them.
    pub fn names(&self) -> [&str; 3] {
        [&self.reserve, &self.release, &self.results]
    }
}

/// The queues of the order service's announcements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderQueues {
    /// `OrderPlaced`, order → user (`SHOP_ORDER_PLACED_QUEUE` [orders.placed]).
    pub placed: String,
}

impl Default for OrderQueues {
    fn default() -> Self {
        Self {
            placed: "orders.placed".into(),
        }
    }
}

impl OrderQueues {
    /// The variable naming the placed queue.
    pub const VARIABLES: [&'static str; 1] = ["SHOP_ORDER_PLACED_QUEUE"];

    /// The names from `var`, defaults where unset, by the rules of [`StockQueues::from_vars`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, BadQueueName> {
        let [placed] = Self::VARIABLES;
        Ok(Self {
            placed: queue_name(&var, placed, Self::default().placed)?,
        })
    }

    /// The same names, refused when one is also a stock queue: the catalog and the user service
    /// would each take the other's messages and dead-letter them. Checked where both are read
    /// (the order service).
    pub fn apart_from(self, stock: &StockQueues) -> Result<Self, BadQueueName> {
        if stock.names().contains(&self.placed.as_str()) {
            return Err(BadQueueName {
                variable: Self::VARIABLES[0],
                reason: format!("{:?} is a stock queue already", self.placed),
            });
        }
        Ok(self)
    }
}

/// Every queue, as the variable that names it and its default name: for what runs a whole shop
/// (tests, tools) and names each queue apart.
pub fn defaults() -> Vec<(&'static str, String)> {
    let (stock, orders) = (StockQueues::default(), OrderQueues::default());
    let names = stock.names().map(str::to_owned).into_iter().chain([orders.placed]);
    StockQueues::VARIABLES
        .into_iter()
        .chain(OrderQueues::VARIABLES)
        .zip(names)
        .collect()
}

/// The queue name `variable` gives through `var`, else `default`: up to 200 letters, digits,
/// `.`, `_`, `-` or `:` (an AMQP short string with room for the `.dead` suffix of its
/// dead-letter queue).
fn queue_name(
    var: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: String,
) -> Result<String, BadQueueName> {
    let name = var(variable).map_or(default, |raw| raw.trim().to_owned());
    if name.is_empty() || name.len() > 200 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c)) {
        return Err(BadQueueName {
            variable,
            reason: format!("{name:?} must be 1 to 200 letters, digits, '.', '_', '-' or ':'"),
        });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<StockQueues, BadQueueName> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        StockQueues::from_vars(|key| vars.get(key).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(from(&[]), Ok(StockQueues::default()));
        let queues = from(&[("SHOP_CATALOG_RESULTS_QUEUE", " shop.results ")]);
        assert_eq!(queues.map(|q| q.results), Ok("shop.results".to_owned()));
    }

    #[test]
    fn bad_names_name_their_variable() {
        for (key, value) in [
            ("SHOP_CATALOG_RESULTS_QUEUE", "stock results"),
            ("SHOP_CATALOG_RESERVE_QUEUE", ""),
            ("SHOP_CATALOG_RESULTS_QUEUE", "stock.reserve"),
        ] {
            assert_eq!(
                from(&[(key, value)]).err().map(|e| e.variable),
                Some(key),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn the_placed_queue_has_a_default_the_same_rules_and_a_name_of_its_own() {
        let vars = |pairs: &[(&str, &str)]| {
            let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            OrderQueues::from_vars(move |key| vars.get(key).cloned())
        };
        assert_eq!(vars(&[]), Ok(OrderQueues::default()));
        assert_eq!(
            vars(&[("SHOP_ORDER_PLACED_QUEUE", " shop.placed ")]).map(|q| q.placed),
            Ok("shop.placed".to_owned())
        );
        let bad = vars(&[("SHOP_ORDER_PLACED_QUEUE", "orders placed")]);
        assert_eq!(bad.err().map(|e| e.variable), Some("SHOP_ORDER_PLACED_QUEUE"));
        let shared = vars(&[("SHOP_ORDER_PLACED_QUEUE", "stock.results")])
            .and_then(|queues| queues.apart_from(&StockQueues::default()));
        assert_eq!(shared.err().map(|e| e.variable), Some("SHOP_ORDER_PLACED_QUEUE"));
    }
}
