//! `releases`: every release applied, keyed by (order id, release id), so a repeated release
//! gives nothing back twice.

use sea_orm::entity::prelude::*;

/// An applied release.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "releases")]
pub struct Model {
    /// The order's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    /// The release's id (the order id, or a returned item's id).
    #[sea_orm(primary_key, auto_increment = false)]
    pub release_id: Uuid,
    /// When it was applied.
    pub created_at: DateTimeUtc,
}

/// No navigable relations are needed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
