//! The order service's tables, as sea-orm entities, and the statuses stored in them. Statuses
//! are short strings, so the schema is the same on PostgreSQL and SQLite.

pub mod idempotency;
pub mod item;
pub mod order;
pub mod payment;
pub mod payment_task;
pub mod refund;
pub mod release;

use sea_orm::entity::prelude::*;

/// Where an order stands (see `shop.order.v1.OrderStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
pub enum OrderStatus {
    /// Waiting for the stock reservation.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Stock reserved and payment captured.
    #[sea_orm(string_value = "paid")]
    Paid,
    /// Handed to shipping.
    #[sea_orm(string_value = "shipped")]
    Shipped,
    /// Delivered.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// Stock was short.
    #[sea_orm(string_value = "rejected")]
    Rejected,
    /// The payment was declined.
    #[sea_orm(string_value = "payment_failed")]
    PaymentFailed,
    /// Cancelled before shipping.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

/// Where one item stands (see `shop.order.v1.OrderItemStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
pub enum ItemStatus {
    /// Not shipped yet.
    #[sea_orm(string_value = "ordered")]
    Ordered,
    /// Shipped with its order.
    #[sea_orm(string_value = "shipped")]
    Shipped,
    /// Delivered with its order.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// Will not ship.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    /// Returned after delivery.
    #[sea_orm(string_value = "returned")]
    Returned,
}

/// Where a payment stands (see `shop.order.v1.PaymentStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
pub enum PaymentStatus {
    /// Not attempted yet.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The amount was captured.
    #[sea_orm(string_value = "captured")]
    Captured,
    /// The provider declined.
    #[sea_orm(string_value = "declined")]
    Declined,
    /// Part of the capture was refunded.
    #[sea_orm(string_value = "partially_refunded")]
    PartiallyRefunded,
    /// All of the capture was refunded.
    #[sea_orm(string_value = "refunded")]
    Refunded,
    /// Never attempted and never will be.
    #[sea_orm(string_value = "voided")]
    Voided,
}
