//! `reservation_lines`: what a reserved order took from each product, and how much of it has
//! been given back since.

use sea_orm::entity::prelude::*;

/// A reservation line.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reservation_lines")]
pub struct Model {
    /// The order's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    /// The product's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: Uuid,
    /// Units taken from stock.
    pub quantity: i64,
    /// Units given back so far (at most `quantity`).
    pub released: i64,
}

/// No navigable relations are needed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
