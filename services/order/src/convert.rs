//! Orders as the API shows them: stored records converted to `shop.order.v1` messages, at the
//! edge only.

use shop_platform::grpc::convert::timestamp;
use shop_proto::pb::{common::Money, order as pb};

use crate::{
    entity::{ItemStatus, OrderStatus, PaymentStatus, item},
    store::OrderRecord,
};

/// The order as `shop.order.v1.Order`.
pub fn order(record: &OrderRecord) -> pb::Order {
    let order = &record.order;
    let money = |amount| Money {
        amount,
        currency: order.currency.clone(),
    };
    pb::Order {
        id: order.id.to_string(),
        user_id: order.user_id.to_string(),
        status: order_status(order.status) as i32,
        items: record
            .items
            .iter()
            .map(|item| self::item(item, &order.currency))
            .collect(),
        total: Some(money(order.total)),
        payment: Some(pb::Payment {
            status: payment_status(record.payment.status) as i32,
            amount: Some(money(record.payment.amount)),
            refunded: Some(money(record.payment.refunded)),
            captured_at: record.payment.captured_at.map(timestamp),
        }),
        created_at: Some(timestamp(order.placed_at)),
        updated_at: Some(timestamp(order.updated_at)),
        status_reason: order.status_reason.clone(),
    }
}

fn item(item: &item::Model, currency: &str) -> pb::OrderItem {
    pb::OrderItem {
        id: item.id.to_string(),
        product_id: item.product_id.to_string(),
        name: item.name.clone(),
        unit_price: Some(Money {
            amount: item.unit_price,
            currency: currency.to_owned(),
        }),
        quantity: u32::try_from(item.quantity).unwrap_or(u32::MAX),
        status: item_status(item.status) as i32,
        shipped_at: item.shipped_at.map(timestamp),
        delivered_at: item.delivered_at.map(timestamp),
        returned_at: item.returned_at.map(timestamp),
    }
}

fn order_status(status: OrderStatus) -> pb::OrderStatus {
    match status {
        OrderStatus::Pending => pb::OrderStatus::Pending,
        OrderStatus::Paid => pb::OrderStatus::Paid,
        OrderStatus::Shipped => pb::OrderStatus::Shipped,
        OrderStatus::Delivered => pb::OrderStatus::Delivered,
        OrderStatus::Rejected => pb::OrderStatus::Rejected,
        OrderStatus::PaymentFailed => pb::OrderStatus::PaymentFailed,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    }
}

fn item_status(status: ItemStatus) -> pb::OrderItemStatus {
    match status {
        ItemStatus::Ordered => pb::OrderItemStatus::Ordered,
        ItemStatus::Shipped => pb::OrderItemStatus::Shipped,
        ItemStatus::Delivered => pb::OrderItemStatus::Delivered,
        ItemStatus::Cancelled => pb::OrderItemStatus::Cancelled,
        ItemStatus::Returned => pb::OrderItemStatus::Returned,
    }
}

fn payment_status(status: PaymentStatus) -> pb::PaymentStatus {
    match status {
        PaymentStatus::Pending => pb::PaymentStatus::Pending,
        PaymentStatus::Captured => pb::PaymentStatus::Captured,
        PaymentStatus::Declined => pb::PaymentStatus::Declined,
        PaymentStatus::PartiallyRefunded => pb::PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
        PaymentStatus::Voided => pb::PaymentStatus::Voided,
    }
}
