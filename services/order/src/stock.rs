//! The order service's side of the stock conversation with the catalog (see
//! shop/events/v1/events.proto): ReserveStock and ReleaseStock written to the outbox inside the
//! transaction of the state change they belong to.

use chrono::{DateTime, Utc};
use prost::Message as _;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, sea_query::OnConflict};
use shop_platform::outbox::OutboxMessage;
use shop_proto::{message_type, pb::events};
use uuid::Uuid;

use crate::{
    config::StockQueues,
    entity::{item, release},
    store::OrderRecord,
};

/// Why stock goes back to the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The order was cancelled.
    Cancelled,
    /// The payment was declined.
    PaymentFailed,
    /// An item was returned.
    Returned,
    /// The catalog never answered the reservation, and the order was rejected.
    TimedOut,
}

impl ReleaseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::PaymentFailed => "payment_failed",
            Self::Returned => "returned",
            Self::TimedOut => "reservation_timeout",
        }
    }
}

/// The message asking the catalog to reserve the stock of every item of order `order_id`, for
/// the outbox (made in the request's span: it carries its trace context).
pub(crate) fn reserve(queues: &StockQueues, order_id: Uuid, items: &[item::Model]) -> OutboxMessage {
    let message = events::ReserveStock {
        order_id: order_id.to_string(),
        lines: lines(items),
    };
    OutboxMessage::new(
        &queues.reserve,
        &message_type::<events::ReserveStock>(),
        message.encode_to_vec(),
    )
}

/// Asks the catalog to give back the stock of `items` of order `order_id`, once per
/// `release_id` (the order id for a whole order, the item id for a return): the release is
/// recorded, and a release already recorded is not sent again. `true` when a message was
/// written.
pub(crate) async fn release<C: ConnectionTrait>(
    conn: &C,
    queues: &StockQueues,
    order_id: Uuid,
    release_id: Uuid,
    reason: ReleaseReason,
    items: &[item::Model],
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let recorded = release::Entity::insert(release::ActiveModel {
        order_id: Set(order_id),
        release_id: Set(release_id),
        reason: Set(reason.as_str().to_owned()),
        requested_at: Set(now),
        released_at: Set(None),
    })
    .on_conflict(
        OnConflict::columns([release::Column::OrderId, release::Column::ReleaseId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    if recorded == 0 {
        return Ok(false);
    }
    let message = events::ReleaseStock {
        order_id: order_id.to_string(),
        release_id: release_id.to_string(),
        lines: lines(items),
    };
    let kind = message_type::<events::ReleaseStock>();
    shop_platform::outbox::enqueue(conn, &queues.release, &kind, message.encode_to_vec()).await?;
    Ok(true)
}

/// Asks the catalog to give back everything order `record` still holds (a cancellation, a
/// declined payment, a timed-out reservation), once per order: the release id is the order id.
pub(crate) async fn release_order<C: ConnectionTrait>(
    conn: &C,
    queues: &StockQueues,
    record: &OrderRecord,
    reason: ReleaseReason,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let order_id = record.order.id;
    release(conn, queues, order_id, order_id, reason, &record.items, now).await
}

/// One stock line per item. Items name distinct products (lines are merged when placing), and
/// quantities were checked to fit a `u32` then.
fn lines(items: &[item::Model]) -> Vec<events::StockLine> {
    items
        .iter()
        .map(|item| events::StockLine {
            product_id: item.product_id.to_string(),
            quantity: u32::try_from(item.quantity).unwrap_or(u32::MAX),
        })
        .collect()
}
