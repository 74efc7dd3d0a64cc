//! `reservations`: one row per order the worker has answered, keyed by order id.

use sea_orm::entity::prelude::*;

/// The status of an order that got its stock.
pub const RESERVED: &str = "reserved";
/// The status of an order that was refused.
pub const REJECTED: &str = "rejected";

/// A reservation row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reservations")]
pub struct Model {
    /// The order's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    /// [`RESERVED`] or [`REJECTED`].
    pub status: String,
    /// For a rejected order, the short lines as JSON (to repeat the answer); otherwise `None`.
    pub shortages: Option<String>,
    /// When the answer was given.
    pub created_at: DateTimeUtc,
}

/// No navigable relations are needed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
