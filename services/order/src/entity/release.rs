//! `stock_releases`: every ReleaseStock the order service asked for, and when the catalog
//! confirmed it (StockReleased), so operators can see releases still in flight.

use sea_orm::entity::prelude::*;

/// One release of an order's stock.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stock_releases")]
pub struct Model {
    /// The order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    /// The order id for a whole-order release, the item id for a return.
    #[sea_orm(primary_key, auto_increment = false)]
    pub release_id: Uuid,
    /// Why: `cancelled`, `payment_failed` or `returned`.
    pub reason: String,
    /// When the release was written to the outbox.
    pub requested_at: DateTimeUtc,
    /// When the catalog confirmed it.
    pub released_at: Option<DateTimeUtc>,
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
