//! The order service's business metrics, each counted once the transaction that made it happen
//! committed:
//!
//! - `shop.orders` (Prometheus `shop_orders_total`): the funnel, one series per
//!   `shop.order.event`, every one present from the start (at 0), so that an alert on an
//!   increase fires on the first event;
//! - `shop.order.reservation.duration` (`shop_order_reservation_duration_seconds`): from an
//!   order's placement to the outcome of its reservation, by `shop.order.outcome`: `paid` (the
//!   stock was reserved and the payment captured) or `rejected` (out of stock, or the catalog
//!   never answered);
//! - `shop.orders.pending` and `shop.orders.pending.oldest_age` (seconds): the orders waiting
//!   for their reservation or payment now, read by a periodic poll ([`PendingOrders`]).

use std::{sync::OnceLock, time::Duration};

use chrono::{DateTime, Utc};
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram},
};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use shop_platform::telemetry::metrics::{self, BacklogGauges};
use tokio_util::sync::CancellationToken;

use crate::{
    context::Context,
    entity::{OrderStatus, order},
};

/// What happened to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    /// Placed (a new order, not a replayed idempotent request).
    Placed,
    /// Its payment was captured.
    Paid,
    /// Refused: out of stock, or the catalog never answered its reservation.
    Rejected,
    /// Its payment was declined.
    PaymentFailed,
    /// Cancelled by its buyer.
    Cancelled,
    /// Handed to the carrier.
    Shipped,
    /// Delivered.
    Delivered,
    /// One of its items was returned.
    Returned,
}

impl OrderEvent {
    const ALL: [Self; 8] = [
        Self::Placed,
        Self::Paid,
        Self::Rejected,
        Self::PaymentFailed,
        Self::Cancelled,
        Self::Shipped,
        Self::Delivered,
        Self::Returned,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Rejected => "rejected",
            Self::PaymentFailed => "payment_failed",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Returned => "returned",
        }
    }
}

fn orders() -> &'static Counter<u64> {
    static ORDERS: OnceLock<Counter<u64>> = OnceLock::new();
    ORDERS.get_or_init(|| {
        let counter = metrics::meter()
            .u64_counter("shop.orders")
            .with_unit("{order}")
            .with_description(
                "Orders placed, paid, rejected, failed to pay, cancelled, shipped, delivered, and items returned.",
            )
            .build();
        for event in OrderEvent::ALL {
            counter.add(0, &[KeyValue::new("shop.order.event", event.label())]);
        }
        counter
    })
}

/// Starts every series at 0 (called when the service starts).
pub fn init() {
    let _ = orders();
    let _ = reservations();
}

/// Counts `event`.
pub fn count(event: OrderEvent) {
    count_many(event, 1);
}

/// Counts `event` `times` (orders moved in one batch).
pub fn count_many(event: OrderEvent, times: u64) {
    if times > 0 {
        orders().add(times, &[KeyValue::new("shop.order.event", event.label())]);
    }
}

/// How an order's reservation ended (`shop.order.outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Stock reserved and payment captured: PAID.
    Paid,
    /// REJECTED.
    Rejected,
}

fn reservations() -> &'static Histogram<f64> {
    static RESERVATIONS: OnceLock<Histogram<f64>> = OnceLock::new();
    RESERVATIONS.get_or_init(|| {
        metrics::duration_histogram(
            "shop.order.reservation.duration",
            "Time from an order's placement to the outcome of its reservation (paid or rejected).",
        )
    })
}

/// Records that the reservation of an order placed at `placed_at` ended as `outcome` at `now`,
/// and counts the event.
pub fn reservation_ended(outcome: Reservation, placed_at: DateTime<Utc>, now: DateTime<Utc>) {
    let (label, event) = match outcome {
        Reservation::Paid => ("paid", OrderEvent::Paid),
        Reservation::Rejected => ("rejected", OrderEvent::Rejected),
    };
    reservations().record(
        metrics::seconds_since(placed_at, now),
        &[KeyValue::new("shop.order.outcome", label)],
    );
    count(event);
}

/// The pending-order gauges, read from the order database by [`PendingOrders::run`].
#[derive(Clone, Debug)]
pub struct PendingOrders {
    ctx: Context,
}

fn pending_gauges() -> &'static BacklogGauges {
    static GAUGES: OnceLock<BacklogGauges> = OnceLock::new();
    GAUGES.get_or_init(|| {
        BacklogGauges::new(
            "shop.orders.pending",
            "{order}",
            "Orders pending now: waiting for their stock reservation or their payment.",
            "shop.orders.pending.oldest_age",
            "Seconds the oldest pending order has waited since it was placed; 0 when none waits.",
        )
    })
}

impl PendingOrders {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// Reads both values now: a count and a first row of the pending orders, found by the
    /// status prefix of the scheduler's index (`orders_paid_due`), so the cost grows with the
    /// pending orders only.
    pub async fn poll(&self) -> anyhow::Result<()> {
        let pending = order::Entity::find().filter(order::Column::Status.eq(OrderStatus::Pending));
        pending_gauges()
            .poll(
                &[],
                &self.ctx.db,
                pending,
                order::Column::PlacedAt,
                order::Column::PlacedAt,
                self.ctx.clock.now(),
            )
            .await
            .map_err(|error| error.context("reading the pending orders"))
    }

    /// Polls every `interval` until `shutdown`, the first time at once.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        metrics::poll_every("shop.orders.pending", interval, shutdown, || self.poll()).await;
    }
}
