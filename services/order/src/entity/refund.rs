//! `refunds`: every refund given, for a cancelled order or a returned item.

use sea_orm::entity::prelude::*;

/// One refund.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    /// The refund's id (the provider's idempotency key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The order refunded.
    pub order_id: Uuid,
    /// The returned item; `None` for a whole-order refund (a cancellation).
    pub item_id: Option<Uuid>,
    /// How much, in the payment's currency.
    pub amount: i64,
    /// The provider's reference of the refund.
    pub provider_reference: String,
    /// When it was given.
    pub created_at: DateTimeUtc,
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
