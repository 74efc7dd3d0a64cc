//! Products and stock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_proto::pb::{catalog as pb, common::Money};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{BadReply, required, time, uuid};

/// A product as the catalog holds it now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Product {
    /// The product's id.
    pub id: Uuid,
    /// The name shown to buyers.
    pub name: String,
    /// The description shown to buyers; may be empty.
    pub description: String,
    /// The unit price in the currency's minor unit.
    pub price: i64,
    /// The ISO 4217 code of the price, e.g. `KRW`.
    pub currency: String,
    /// Units available to order now.
    pub stock: i64,
    /// Whether buyers see it.
    pub visible: bool,
    /// The seller who owns it.
    pub seller_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When any of its fields last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<pb::Product> for Product {
    type Error = BadReply;

    fn try_from(product: pb::Product) -> Result<Self, Self::Error> {
        let price = required(product.price, "product price")?;
        Ok(Self {
            id: uuid(&product.id, "product id")?,
            seller_id: uuid(&product.seller_id, "product seller_id")?,
            created_at: time(product.created_at, "product created_at")?,
            updated_at: time(product.updated_at, "product updated_at")?,
            name: product.name,
            description: product.description,
            price: price.amount,
            currency: price.currency,
            stock: product.stock,
            visible: product.visible,
        })
    }
}

/// The product a reply carries.
pub fn product(product: Option<pb::Product>) -> Result<Product, BadReply> {
    Product::try_from(required(product, "product")?)
}

/// A page of products.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductList {
    /// The products, newest first.
    pub items: Vec<Product>,
    /// The cursor of the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The filters and page of `GET /products`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Only products whose name or description contains this text (case-insensitive); up to 200
    /// characters, no control characters.
    #[param(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub q: Option<String>,
    /// Only products priced at least this (minor units).
    #[param(minimum = 0)]
    pub min_price: Option<i64>,
    /// Only products priced at most this (minor units).
    #[param(minimum = 0)]
    pub max_price: Option<i64>,
    /// `true`: only products in stock.
    pub in_stock: Option<bool>,
    /// Only this seller's products.
    pub seller_id: Option<Uuid>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Where to continue: the `next_cursor` of the previous page. Opaque.
    pub cursor: Option<String>,
}

/// `POST /products`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProductRequest {
    /// 1 to 200 characters, no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    /// Up to 10,000 characters; may be empty; no control characters but newline, carriage
    /// return and tab.
    #[schema(
        max_length = 10000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: String,
    /// The unit price in the currency's minor unit, 0 to 10^12.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "super::whole_i64")]
    pub price: i64,
    /// The ISO 4217 code of the price, three upper-case letters; `KRW` when absent or empty.
    #[schema(pattern = r"^([A-Z]{3})?$")]
    pub currency: Option<String>,
    /// The initial stock, 0 to 10^9.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "super::whole_i64")]
    pub stock: i64,
    /// Whether buyers see it at once; `true` when absent.
    pub visible: Option<bool>,
}

impl From<CreateProductRequest> for pb::CreateProductRequest {
    fn from(body: CreateProductRequest) -> Self {
        Self {
            name: body.name,
            description: body.description,
            price: Some(Money {
                amount: body.price,
                currency: body.currency.unwrap_or_default(),
            }),
            stock: body.stock,
            visible: body.visible,
        }
    }
}

/// `PATCH /products/{id}`: absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProductRequest {
    /// The new name: 1 to 200 characters, no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: Option<String>,
    /// The new description: up to 10,000 characters; no control characters but newline,
    /// carriage return and tab.
    #[schema(
        max_length = 10000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    /// The new unit price, in the product's currency: 0 to 10^12.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "super::whole_i64_opt")]
    pub price: Option<i64>,
    /// Shows (`true`) or hides (`false`) the product.
    pub visible: Option<bool>,
}

impl UpdateProductRequest {
    /// The update of product `id`.
    pub fn into_proto(self, id: Uuid) -> pb::UpdateProductRequest {
        pb::UpdateProductRequest {
            id: id.to_string(),
            name: self.name,
            description: self.description,
            // An empty currency keeps the product's currency.
            price: self.price.map(|amount| Money {
                amount,
                currency: String::new(),
            }),
            visible: self.visible,
        }
    }
}

/// `PUT /products/{id}/stock`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetStockRequest {
    /// The units available from now on, 0 to 10^9.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "super::whole_i64")]
    pub stock: i64,
}

/// A product's available stock.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stock {
    /// The product's id.
    pub product_id: Uuid,
    /// Units available to order now.
    pub stock: i64,
}

impl Stock {
    /// The stock a reply names.
    pub fn new(product_id: &str, stock: i64) -> Result<Self, BadReply> {
        Ok(Self {
            product_id: uuid(product_id, "stock product_id")?,
            stock,
        })
    }
}
