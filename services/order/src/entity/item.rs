//! `order_items`: the lines of an order, with the name and price snapshotted at placing, and
//! each item's own shipping, delivery and return times (the return window runs from its
//! `delivered_at`).

use sea_orm::entity::prelude::*;

use super::ItemStatus;

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "order_items")]
pub struct Model {
    /// The item's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The order it belongs to.
    pub order_id: Uuid,
    /// Its place in the order, from 0, as the lines were given.
    pub position: i32,
    /// The product.
    pub product_id: Uuid,
    /// The product's name when the order was placed.
    pub name: String,
    /// The product's price when the order was placed, in the order's currency.
    pub unit_price: i64,
    /// How many.
    pub quantity: i64,
    /// Where it stands.
    pub status: ItemStatus,
    /// The cart line it came from, for orders placed from the cart.
    pub cart_item_id: Option<Uuid>,
    /// When it shipped; set once.
    pub shipped_at: Option<DateTimeUtc>,
    /// When it was delivered; set once.
    pub delivered_at: Option<DateTimeUtc>,
    /// When it was returned; set once.
    pub returned_at: Option<DateTimeUtc>,
}

impl Model {
    /// Unit price times quantity.
    pub fn line_total(&self) -> i64 {
        self.unit_price.saturating_mul(self.quantity)
    }
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
