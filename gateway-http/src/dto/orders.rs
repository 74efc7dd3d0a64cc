//! Orders: placing them, and how they, their items and their payment stand.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_proto::pb::order as pb;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{BadReply, Quantity, optional_time, required, time, uuid};
use crate::problem::ApiError;

/// Where an order stands: `pending` → `paid` → `shipped` → `delivered`, or it ends
/// `rejected`, `payment_failed` or `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Waiting for the stock to be reserved.
    Pending,
    /// Stock reserved and payment captured.
    Paid,
    /// Handed to shipping.
    Shipped,
    /// Delivered.
    Delivered,
    /// The stock was short.
    Rejected,
    /// The payment was declined.
    PaymentFailed,
    /// Cancelled before shipping.
    Cancelled,
}

impl TryFrom<i32> for OrderStatus {
    type Error = BadReply;

    fn try_from(raw: i32) -> Result<Self, Self::Error> {
        Ok(
            match pb::OrderStatus::try_from(raw).map_err(|_| BadReply("order status"))? {
                pb::OrderStatus::Unspecified => return Err(BadReply("order status")),
                pb::OrderStatus::Pending => Self::Pending,
                pb::OrderStatus::Paid => Self::Paid,
                pb::OrderStatus::Shipped => Self::Shipped,
                pb::OrderStatus::Delivered => Self::Delivered,
                pb::OrderStatus::Rejected => Self::Rejected,
                pb::OrderStatus::PaymentFailed => Self::PaymentFailed,
                pb::OrderStatus::Cancelled => Self::Cancelled,
            },
        )
    }
}

/// Where one item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderItemStatus {
    /// Not shipped yet.
    Ordered,
    /// Shipped with its order.
    Shipped,
    /// Delivered; returnable within the return window.
    Delivered,
    /// Not going to ship.
    Cancelled,
    /// Returned and refunded.
    Returned,
}

impl TryFrom<i32> for OrderItemStatus {
    type Error = BadReply;

    fn try_from(raw: i32) -> Result<Self, Self::Error> {
        Ok(
            match pb::OrderItemStatus::try_from(raw).map_err(|_| BadReply("item status"))? {
                pb::OrderItemStatus::Unspecified => return Err(BadReply("item status")),
                pb::OrderItemStatus::Ordered => Self::Ordered,
                pb::OrderItemStatus::Shipped => Self::Shipped,
                pb::OrderItemStatus::Delivered => Self::Delivered,
                pb::OrderItemStatus::Cancelled => Self::Cancelled,
                pb::OrderItemStatus::Returned => Self::Returned,
            },
        )
    }
}

/// Where the payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Not attempted yet.
    Pending,
    /// The full amount was captured.
    Captured,
    /// The capture was declined.
    Declined,
    /// Part of the amount was refunded.
    PartiallyRefunded,
    /// The whole amount was refunded.
    Refunded,
    /// Never attempted: the order ended before payment.
    Voided,
}

impl TryFrom<i32> for PaymentStatus {
    type Error = BadReply;

    fn try_from(raw: i32) -> Result<Self, Self::Error> {
        Ok(
            match pb::PaymentStatus::try_from(raw).map_err(|_| BadReply("payment status"))? {
                pb::PaymentStatus::Unspecified => return Err(BadReply("payment status")),
                pb::PaymentStatus::Pending => Self::Pending,
                pb::PaymentStatus::Captured => Self::Captured,
                pb::PaymentStatus::Declined => Self::Declined,
                pb::PaymentStatus::PartiallyRefunded => Self::PartiallyRefunded,
                pb::PaymentStatus::Refunded => Self::Refunded,
                pb::PaymentStatus::Voided => Self::Voided,
            },
        )
    }
}

/// An order with its items and payment. Amounts are in the order's `currency`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    /// The order's id.
    pub id: Uuid,
    /// Who placed it.
    pub user_id: Uuid,
    /// Where it stands.
    pub status: OrderStatus,
    /// The items, in the order they were placed.
    pub items: Vec<OrderItem>,
    /// The sum of unit price times quantity over all items.
    pub total: i64,
    /// The ISO 4217 code of every amount of the order.
    pub currency: String,
    /// The payment.
    pub payment: Payment,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When anything about it last changed.
    pub updated_at: DateTime<Utc>,
    /// Why it is in its status, when there is something to say: `out_of_stock`,
    /// `payment_declined`, `cancelled_by_customer`, `cancelled_by_admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
}

/// One product line of an order, as it was when the order was placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderItem {
    /// The item's id.
    pub id: Uuid,
    /// The product's id.
    pub product_id: Uuid,
    /// The product's name when the order was placed.
    pub name: String,
    /// The product's price when the order was placed.
    pub unit_price: i64,
    /// How many were ordered.
    pub quantity: u32,
    /// Where the item stands.
    pub status: OrderItemStatus,
    /// When it shipped.
    pub shipped_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When it was returned.
    pub returned_at: Option<DateTime<Utc>>,
}

/// The money side of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Payment {
    /// Where the payment stands.
    pub status: PaymentStatus,
    /// The amount to capture: the order's total.
    pub amount: i64,
    /// How much has been refunded so far.
    pub refunded: i64,
    /// When the amount was captured.
    pub captured_at: Option<DateTime<Utc>>,
}

impl TryFrom<pb::Order> for Order {
    type Error = BadReply;

    fn try_from(order: pb::Order) -> Result<Self, Self::Error> {
        let total = required(order.total, "order total")?;
        let payment = required(order.payment, "order payment")?;
        Ok(Self {
            id: uuid(&order.id, "order id")?,
            user_id: uuid(&order.user_id, "order user_id")?,
            status: OrderStatus::try_from(order.status)?,
            items: order
                .items
                .into_iter()
                .map(OrderItem::try_from)
                .collect::<Result<_, _>>()?,
            total: total.amount,
            currency: total.currency,
            payment: Payment {
                status: PaymentStatus::try_from(payment.status)?,
                amount: payment.amount.map_or(0, |money| money.amount),
                refunded: payment.refunded.map_or(0, |money| money.amount),
                captured_at: optional_time(payment.captured_at, "payment captured_at")?,
            },
            created_at: time(order.created_at, "order created_at")?,
            updated_at: time(order.updated_at, "order updated_at")?,
            status_reason: order.status_reason.filter(|reason| !reason.is_empty()),
        })
    }
}

impl TryFrom<pb::OrderItem> for OrderItem {
    type Error = BadReply;

    fn try_from(item: pb::OrderItem) -> Result<Self, Self::Error> {
        Ok(Self {
            id: uuid(&item.id, "order item id")?,
            product_id: uuid(&item.product_id, "order item product_id")?,
            unit_price: required(item.unit_price, "order item unit_price")?.amount,
            status: OrderItemStatus::try_from(item.status)?,
            shipped_at: optional_time(item.shipped_at, "order item shipped_at")?,
            delivered_at: optional_time(item.delivered_at, "order item delivered_at")?,
            returned_at: optional_time(item.returned_at, "order item returned_at")?,
            name: item.name,
            quantity: item.quantity,
        })
    }
}

/// The order a reply carries.
pub fn order(order: Option<pb::Order>) -> Result<Order, BadReply> {
    Order::try_from(required(order, "order")?)
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    /// The orders, newest first.
    pub items: Vec<Order>,
    /// The cursor of the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The filters and page of `GET /orders`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Admins: only this user's orders (everyone's when absent). Others see their own orders.
    pub user_id: Option<Uuid>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Where to continue: the `next_cursor` of the previous page. Opaque.
    pub cursor: Option<String>,
}

/// One product and quantity to order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderLine {
    /// The product.
    pub product_id: Uuid,
    /// How many, at least 1.
    #[schema(value_type = u32, minimum = 1)]
    pub quantity: Quantity,
}

/// `POST /orders`: either `items` or `from_cart: true`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceOrderRequest {
    /// The lines to order (1 to 100).
    #[schema(min_items = 1, max_items = 100)]
    pub items: Option<Vec<OrderLine>>,
    /// `true`: order every line of the caller's cart.
    pub from_cart: Option<bool>,
}

impl PlaceOrderRequest {
    /// The placement under `idempotency_key`; 400 unless exactly one source is given.
    pub fn into_proto(self, idempotency_key: String) -> Result<pb::PlaceOrderRequest, ApiError> {
        use pb::place_order_request::Source;
        let source = match (self.items, self.from_cart) {
            (Some(items), None | Some(false)) => Source::Items(pb::OrderLines {
                lines: items
                    .into_iter()
                    .map(|line| pb::OrderLine {
                        product_id: line.product_id.to_string(),
                        quantity: line.quantity.get(),
                    })
                    .collect(),
            }),
            (None, Some(true)) => Source::FromCart(true),
            (Some(_), Some(true)) => {
                return Err(ApiError::bad_request(
                    "invalid_argument",
                    "give either items or from_cart, not both",
                ));
            }
            (None, _) => {
                return Err(ApiError::bad_request(
                    "invalid_argument",
                    "give items, or from_cart: true",
                ));
            }
        };
        Ok(pb::PlaceOrderRequest {
            idempotency_key,
            source: Some(source),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> PlaceOrderRequest {
        serde_json::from_str(json).unwrap_or_else(|error| panic!("{json}: {error}"))
    }

    #[test]
    fn an_order_has_exactly_one_source() {
        let id = Uuid::new_v4();
        let items = body(&format!(r#"{{"items": [{{"product_id": "{id}", "quantity": 2}}]}}"#));
        let request = items.into_proto("k".to_owned()).ok().and_then(|request| request.source);
        let Some(pb::place_order_request::Source::Items(lines)) = request else {
            panic!("expected explicit lines");
        };
        assert_eq!(lines.lines[0].product_id, id.to_string());
        assert_eq!(lines.lines[0].quantity, 2);

        let cart = body(r#"{"from_cart": true}"#).into_proto("k".to_owned());
        assert!(matches!(
            cart.ok().and_then(|request| request.source),
            Some(pb::place_order_request::Source::FromCart(true))
        ));
        for bad in [
            r#"{}"#,
            r#"{"from_cart": false}"#,
            r#"{"items": [], "from_cart": true}"#,
        ] {
            assert!(body(bad).into_proto("k".to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_use_the_contract_names() {
        let names: Vec<_> = [1, 2, 3, 4, 5, 6, 7]
            .into_iter()
            .map(|raw| serde_json::to_value(OrderStatus::try_from(raw).ok()).unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "pending",
                "paid",
                "shipped",
                "delivered",
                "rejected",
                "payment_failed",
                "cancelled"
            ]
        );
        assert!(OrderStatus::try_from(0).is_err());
        assert_eq!(
            serde_json::to_value(PaymentStatus::try_from(4).ok()).unwrap_or_default(),
            "partially_refunded"
        );
    }
}
