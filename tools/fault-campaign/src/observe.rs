//! What the shop says afterwards, read over the REST edge as the admin: every order (the
//! admin's `GET /orders` lists everyone's) and every product's stock.

use anyhow::Context as _;
use serde_json::Value;

use crate::{
    accounts::{Account, expect},
    api::Api,
};

/// One item of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
    /// Its price when ordered.
    pub unit_price: i64,
    /// `ordered`, `shipped`, `delivered`, `cancelled` or `returned`.
    pub status: String,
}

/// One order as the shop reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// Its id.
    pub id: String,
    /// Who placed it.
    pub user_id: String,
    /// `pending`, `paid`, `shipped`, `delivered`, `rejected`, `payment_failed` or `cancelled`.
    pub status: String,
    /// Its items.
    pub items: Vec<ItemView>,
    /// Its total.
    pub total: i64,
    /// Whether its payment was ever captured.
    pub captured: bool,
    /// How much of it was refunded.
    pub refunded: i64,
}

impl OrderView {
    fn parse(order: &Value) -> anyhow::Result<Self> {
        let text = |value: &Value, what: &str| {
            value
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("order {what}: {order}"))
        };
        let number = |value: &Value, what: &str| value.as_i64().with_context(|| format!("order {what}: {order}"));
        let items = order["items"]
            .as_array()
            .with_context(|| format!("order items: {order}"))?
            .iter()
            .map(|item| {
                Ok(ItemView {
                    product_id: text(&item["product_id"], "item product")?,
                    quantity: number(&item["quantity"], "item quantity")?,
                    unit_price: number(&item["unit_price"], "item price")?,
                    status: text(&item["status"], "item status")?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            id: text(&order["id"], "id")?,
            user_id: text(&order["user_id"], "user")?,
            status: text(&order["status"], "status")?,
            items,
            total: number(&order["total"], "total")?,
            captured: !order["payment"]["captured_at"].is_null(),
            refunded: number(&order["payment"]["refunded"], "refund")?,
        })
    }

    /// Whether it still waits for its stock.
    pub fn is_pending(&self) -> bool {
        self.status == "pending"
    }
}

/// Every order in the shop.
pub async fn all_orders(api: &Api, admin: &Account) -> anyhow::Result<Vec<OrderView>> {
    api.all_items("listing every order", "/orders", Some(&admin.token))
        .await?
        .iter()
        .map(OrderView::parse)
        .collect()
}

/// The available stock of a product.
pub async fn stock(api: &Api, product_id: &str) -> anyhow::Result<i64> {
    let body = expect(
        &format!("reading the stock of {product_id}"),
        api.get(&format!("/products/{product_id}/stock"), None).await,
        200,
    )?;
    body["stock"].as_i64().context("a stock figure")
}
