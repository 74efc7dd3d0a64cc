//! `orders`: one row per order. `placed_at` and the milestone times (`paid_at`, `shipped_at`,
//! `delivered_at`) are written once and never changed: the cancel window and the shipment
//! delays are measured from them, never from `updated_at`. The order's milestones are what the
//! shipment scheduler scans (indexed by status); its items carry their own times for the API
//! and the return window.

use sea_orm::entity::prelude::*;

use super::OrderStatus;

/// An order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    /// The order's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Who placed it.
    pub user_id: Uuid,
    /// Where it stands.
    pub status: OrderStatus,
    /// Why it is in its status (a machine code, for `out_of_stock` followed by the short
    /// products), when there is something to say.
    pub status_reason: Option<String>,
    /// The single currency of its prices.
    pub currency: String,
    /// The sum of unit price times quantity over its items.
    pub total: i64,
    /// For a rejected order: the short lines as the catalog reported them (JSON).
    pub shortages: Option<String>,
    /// When it was placed; never changes.
    pub placed_at: DateTimeUtc,
    /// When it was paid; set once.
    pub paid_at: Option<DateTimeUtc>,
    /// When it shipped; set once.
    pub shipped_at: Option<DateTimeUtc>,
    /// When it was delivered; set once.
    pub delivered_at: Option<DateTimeUtc>,
    /// When anything about it last changed.
    pub updated_at: DateTimeUtc,
    /// When the catalog reserved its stock (the order then waits for its capture); set once.
    pub stock_reserved_at: Option<DateTimeUtc>,
    /// When the reconciler last asked the catalog again for the reservation.
    pub reserve_asked_at: Option<DateTimeUtc>,
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
