//! `cart_items`: the lines of a user's cart, one row per product.

use sea_orm::entity::prelude::*;

/// A cart line.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cart_items")]
pub struct Model {
    /// The line id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose cart.
    pub user_id: Uuid,
    /// The catalog product.
    pub product_id: Uuid,
    /// How many to buy.
    pub quantity: i32,
    /// When the line was made.
    pub created_at: DateTimeUtc,
}

/// No navigable relations are needed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
