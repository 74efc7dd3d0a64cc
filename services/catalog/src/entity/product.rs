//! `products`: one row per product, soft-deleted with `deleted_at`.

use sea_orm::entity::prelude::*;

/// A product row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    /// The product id (a UUIDv7, so new rows append to the primary key index).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The seller who created and owns it.
    pub seller_id: Uuid,
    /// 1 to 200 characters.
    pub name: String,
    /// Up to 10,000 characters.
    pub description: String,
    /// Unit price in the currency's minor unit.
    pub price_amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units available now; reserved units are already taken off.
    pub stock: i64,
    /// Whether buyers see it.
    pub visible: bool,
    /// Creation time (microsecond precision, the keyset order).
    pub created_at: DateTimeUtc,
    /// Last change of any field, stock included.
    pub updated_at: DateTimeUtc,
    /// When it was deleted; deleted products are kept for past orders' sake.
    pub deleted_at: Option<DateTimeUtc>,
}

/// No relations: reservations refer to products by id only.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
