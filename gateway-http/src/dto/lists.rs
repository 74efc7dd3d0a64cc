//! The caller's wishlist and cart. Each item carries the product's live catalog data, null
//! when the product no longer exists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_proto::pb::{common, user as pb};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{BadReply, Quantity, catalog::Product, required, time, uuid};

/// A product on the wishlist.
#[derive(Debug, Serialize, ToSchema)]
pub struct WishlistItem {
    /// The item's id.
    pub id: Uuid,
    /// The product's id.
    pub product_id: Uuid,
    /// How many are wished for; at least 1.
    pub quantity: u32,
    /// The product's live data; null when it no longer exists.
    #[schema(required = true)]
    pub product: Option<Product>,
    /// When the item was added.
    pub added_at: DateTime<Utc>,
}

impl TryFrom<pb::WishlistItem> for WishlistItem {
    type Error = BadReply;

    fn try_from(item: pb::WishlistItem) -> Result<Self, Self::Error> {
        Ok(Self {
            id: uuid(&item.id, "wishlist item id")?,
            product_id: uuid(&item.product_id, "wishlist item product_id")?,
            quantity: item.quantity,
            product: item.product.map(Product::try_from).transpose()?,
            added_at: time(item.added_at, "wishlist item added_at")?,
        })
    }
}

/// The item a reply carries.
pub fn wishlist_item(item: Option<pb::WishlistItem>) -> Result<WishlistItem, BadReply> {
    WishlistItem::try_from(required(item, "wishlist item")?)
}

/// The caller's wishlist, newest item first. It is never paged: `next_cursor` is always null.
#[derive(Debug, Serialize, ToSchema)]
pub struct Wishlist {
    /// The items, newest first.
    pub items: Vec<WishlistItem>,
    /// Always null: the whole wishlist comes in one reply.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `POST /wishlist`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddWishlistItemRequest {
    /// The product to add.
    pub product_id: Uuid,
    /// How many are wished for, at least 1; 1 when absent.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub quantity: Option<Quantity>,
}

impl From<AddWishlistItemRequest> for pb::AddWishlistItemRequest {
    fn from(body: AddWishlistItemRequest) -> Self {
        Self {
            product_id: body.product_id.to_string(),
            quantity: body.quantity.map(Quantity::get),
        }
    }
}

/// `PATCH /wishlist/{item_id}` and `PATCH /cart/items/{item_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QuantityRequest {
    /// The new quantity, at least 1.
    #[schema(value_type = u32, minimum = 1, maximum = 1000)]
    pub quantity: Quantity,
}

/// One line of the cart.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartItem {
    /// The line's id.
    pub id: Uuid,
    /// The product's id.
    pub product_id: Uuid,
    /// How many to buy; at least 1.
    pub quantity: u32,
    /// The product's live data; null when it no longer exists.
    #[schema(required = true)]
    pub product: Option<Product>,
    /// The current price times the quantity, in the product's currency; null when the line
    /// cannot be ordered (product gone or hidden).
    #[schema(required = true)]
    pub line_total: Option<i64>,
    /// When the line was made.
    pub added_at: DateTime<Utc>,
}

impl TryFrom<pb::CartItem> for CartItem {
    type Error = BadReply;

    fn try_from(item: pb::CartItem) -> Result<Self, Self::Error> {
        Ok(Self {
            id: uuid(&item.id, "cart item id")?,
            product_id: uuid(&item.product_id, "cart item product_id")?,
            quantity: item.quantity,
            product: item.product.map(Product::try_from).transpose()?,
            line_total: item.line_total.map(|money| money.amount),
            added_at: time(item.added_at, "cart item added_at")?,
        })
    }
}

/// The line a reply carries.
pub fn cart_item(item: Option<pb::CartItem>) -> Result<CartItem, BadReply> {
    CartItem::try_from(required(item, "cart item")?)
}

/// An amount in one currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Money {
    /// In the currency's minor unit.
    pub amount: i64,
    /// The ISO 4217 code.
    pub currency: String,
}

impl From<common::Money> for Money {
    fn from(money: common::Money) -> Self {
        Self {
            amount: money.amount,
            currency: money.currency,
        }
    }
}

/// The caller's cart with its totals at current prices.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cart {
    /// The lines, oldest first.
    pub items: Vec<CartItem>,
    /// The sum of the line totals (in `currency`).
    pub total: i64,
    /// The currency of `total`.
    pub currency: String,
    /// Sums of lines priced in other currencies, one per currency; normally empty.
    pub other_totals: Vec<Money>,
}

impl TryFrom<pb::Cart> for Cart {
    type Error = BadReply;

    fn try_from(cart: pb::Cart) -> Result<Self, Self::Error> {
        let total = required(cart.total, "cart total")?;
        Ok(Self {
            items: cart
                .items
                .into_iter()
                .map(CartItem::try_from)
                .collect::<Result<_, _>>()?,
            total: total.amount,
            currency: total.currency,
            other_totals: cart.other_totals.into_iter().map(Money::from).collect(),
        })
    }
}

/// `POST /cart/items`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddCartItemRequest {
    /// The product to buy.
    pub product_id: Uuid,
    /// How many to add, at least 1.
    #[schema(value_type = u32, minimum = 1, maximum = 1000)]
    pub quantity: Quantity,
}

impl From<AddCartItemRequest> for pb::AddCartItemRequest {
    fn from(body: AddCartItemRequest) -> Self {
        Self {
            product_id: body.product_id.to_string(),
            quantity: body.quantity.get(),
        }
    }
}
