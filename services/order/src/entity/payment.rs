//! `payments`: the money side of an order, one row per order.

use sea_orm::entity::prelude::*;

use super::PaymentStatus;

/// An order's payment.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    /// The order paid for.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The amount to capture: the order's total.
    pub amount: i64,
    /// The currency of the amounts.
    pub currency: String,
    /// How much was refunded so far.
    pub refunded: i64,
    /// The provider's reference of the capture.
    pub provider_reference: Option<String>,
    /// When the amount was captured.
    pub captured_at: Option<DateTimeUtc>,
    /// When the provider declined.
    pub declined_at: Option<DateTimeUtc>,
    /// When the payment record was made (with the order).
    pub created_at: DateTimeUtc,
    /// When it last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
