//! The order funnel as a counter: `shop.orders` (Prometheus `shop_orders_total`), one series
//! per `shop.order.event`, each counted once the transaction that made it happen committed.

use std::sync::OnceLock;

use opentelemetry::{KeyValue, metrics::Counter};

/// What happened to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    /// Placed (a new order, not a replayed idempotent request).
    Placed,
    /// Its payment was captured.
    Paid,
    /// Cancelled by its buyer.
    Cancelled,
    /// One of its items was returned.
    Returned,
}

impl OrderEvent {
    fn label(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Returned => "returned",
        }
    }
}

/// Counts `event`.
pub fn count(event: OrderEvent) {
    static ORDERS: OnceLock<Counter<u64>> = OnceLock::new();
    ORDERS
        .get_or_init(|| {
            shop_platform::telemetry::metrics::meter()
                .u64_counter("shop.orders")
                .with_unit("{order}")
                .with_description("Orders placed, paid, cancelled, and items returned.")
                .build()
        })
        .add(1, &[KeyValue::new("shop.order.event", event.label())]);
}
