//! OrderPlaced (see shop/events/v1/events.proto): written to the outbox with an order from the
//! cart, in the transaction that places it, so that the user service removes the lines the
//! order bought from the cart. Being committed with the order, it cannot be lost to a user
//! service that is down at that moment: it waits in the queue until that service is back.
//!
//! Orders of explicit lines send none: they took nothing from the cart, and the message has no
//! other consumer; a flash sale's orders then cost one outbox row each, not two.

use prost::Message as _;
use shop_platform::outbox::OutboxMessage;
use shop_proto::{message_type, pb::events};

use crate::{config::OrderQueues, store::OrderRecord};

/// The OrderPlaced message of `record`, for the outbox (made in the request's span: it carries
/// its trace context), or `None` when no item came from the cart.
pub(crate) fn message(queues: &OrderQueues, record: &OrderRecord) -> Option<OutboxMessage> {
    let cart_item_ids: Vec<String> = record
        .items
        .iter()
        .filter_map(|item| item.cart_item_id)
        .map(|id| id.to_string())
        .collect();
    if cart_item_ids.is_empty() {
        return None;
    }
    let message = events::OrderPlaced {
        order_id: record.order.id.to_string(),
        user_id: record.order.user_id.to_string(),
        cart_item_ids,
    };
    Some(OutboxMessage::new(
        &queues.placed,
        &message_type::<events::OrderPlaced>(),
        message.encode_to_vec(),
    ))
}
