//! `wishlist_items`: products a user saved, one row per product.

use sea_orm::entity::prelude::*;

/// A wishlist item.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wishlist_items")]
pub struct Model {
    /// The item id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose wishlist.
    pub user_id: Uuid,
    /// The catalog product.
    pub product_id: Uuid,
    /// The wished quantity.
    pub quantity: i32,
    /// When it was added.
    pub created_at: DateTimeUtc,
}

/// No navigable relations are needed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
