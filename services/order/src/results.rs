//! Applies the catalog's stock results to orders, exactly once in effect: each message's id goes
//! into the inbox in the transaction of its effects (a redelivered message changes nothing), and
//! each effect is guarded by the order's state (a result repeated under a new id changes
//! nothing either).
//!
//! - StockReserved for a PENDING order: the payment is captured, then PAID; if the provider
//!   declines, PAYMENT_FAILED and the stock goes back. For an order cancelled while PENDING: the
//!   reservation arrived too late, so the stock goes back.
//! - StockRejected for a PENDING order: REJECTED (`out_of_stock`), the payment voided.
//! - StockReleased: the release is marked confirmed.

use anyhow::Context as _;
use prost::Message as _;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::Expr,
};
use shop_platform::{
    outbox::inbox,
    queue::{Delivery, Message, QueueError, WorkQueue},
    telemetry::propagation,
};
use shop_proto::pb::events;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    context::Context,
    entity::{OrderStatus, PaymentStatus, release},
    payment::{Capture, CaptureOutcome},
    stock::{self, ReleaseReason},
    store::{self, OrderRecord},
};

/// Unsettled deliveries one consumer holds at a time.
const PREFETCH: u16 = 16;

/// A stock result, decoded.
#[derive(Clone, Debug, PartialEq)]
enum StockResult {
    Reserved(events::StockReserved),
    Rejected(events::StockRejected),
    Released(events::StockReleased),
}

impl StockResult {
    fn decode(message: &Message) -> Option<Self> {
        let payload = message.payload.as_slice();
        match message.kind.as_str() {
            stock::STOCK_RESERVED => events::StockReserved::decode(payload).ok().map(Self::Reserved),
            stock::STOCK_REJECTED => events::StockRejected::decode(payload).ok().map(Self::Rejected),
            stock::STOCK_RELEASED => events::StockReleased::decode(payload).ok().map(Self::Released),
            _ => None,
        }
    }

    fn order_id(&self) -> &str {
        match self {
            Self::Reserved(message) => &message.order_id,
            Self::Rejected(message) => &message.order_id,
            Self::Released(message) => &message.order_id,
        }
    }
}

/// Consumes the results queue until `shutdown`; unsettled deliveries go back to the queue.
pub async fn run(ctx: Context, queue: std::sync::Arc<dyn WorkQueue>, shutdown: CancellationToken) {
    let name = ctx.config.queues.results.clone();
    let mut consumer = loop {
        match queue.consume(&name, PREFETCH).await {
            Ok(consumer) => break consumer,
            Err(error) => {
                tracing::warn!(error = %error, queue = %name, "cannot consume stock results yet");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => return,
            next = consumer.next() => next,
        };
        match delivery {
            Ok(delivery) => {
                let span = tracing::info_span!(
                    "stock.result",
                    message_id = %delivery.message.id,
                    trace_id = tracing::field::Empty
                );
                propagation::set_remote_parent(&span, propagation::extract_message(&delivery.message.headers));
                handle(&ctx, delivery).instrument(span).await;
            }
            Err(QueueError::Closed) => return,
            Err(error) => {
                tracing::warn!(error = %error, "receiving stock results failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// Applies one delivery and settles it: ack after the commit, retry on a failure (up to the
/// queue's delivery limit), dead letter if it can never apply.
async fn handle(ctx: &Context, delivery: Delivery) {
    let Some(result) = StockResult::decode(&delivery.message) else {
        tracing::error!(kind = %delivery.message.kind, "undecodable or unknown stock result: dead-lettered");
        settle(delivery.dead_letter().await);
        return;
    };
    let Ok(order_id) = Uuid::parse_str(result.order_id()) else {
        tracing::error!(
            order_id = result.order_id(),
            "stock result for a malformed order id: dead-lettered"
        );
        settle(delivery.dead_letter().await);
        return;
    };
    match apply(ctx, &delivery.message.id, order_id, &result).await {
        Ok(()) => settle(delivery.ack().await),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), %order_id, "applying a stock result failed; it will be retried");
            settle(delivery.retry().await);
        }
    }
}

fn settle(result: Result<(), QueueError>) {
    // A lost settlement means a redelivery, which the inbox makes harmless.
    if let Err(error) = result {
        tracing::warn!(error = %error, "settling a stock result failed");
    }
}

/// Applies `result` for `order_id` once per `message_id`, in one transaction.
async fn apply(ctx: &Context, message_id: &str, order_id: Uuid, result: &StockResult) -> anyhow::Result<()> {
    let txn = store::begin_write(&ctx.db).await?;
    if !inbox::first_delivery(&txn, message_id).await? {
        txn.rollback().await?;
        tracing::debug!(message_id, "stock result seen before");
        return Ok(());
    }
    // Reservation results change the order: lock it first.
    let record = match result {
        StockResult::Released(_) => None,
        StockResult::Reserved(_) | StockResult::Rejected(_) => store::lock(&txn, order_id).await?,
    };
    let enqueued = match (result, record) {
        (StockResult::Released(released), _) => confirm_release(ctx, &txn, order_id, released).await?,
        (_, None) => {
            tracing::error!(%order_id, "stock result for an unknown order; ignored");
            false
        }
        (StockResult::Reserved(_), Some(record)) => apply_reservation(ctx, &txn, record).await?,
        (StockResult::Rejected(rejected), Some(record)) => apply_rejection(ctx, &txn, record, rejected).await?,
    };
    txn.commit().await?;
    if enqueued {
        ctx.relay.wake();
    }
    Ok(())
}

async fn apply_reservation(ctx: &Context, txn: &DatabaseTransaction, record: OrderRecord) -> anyhow::Result<bool> {
    let now = ctx.clock.now();
    let order_id = record.order.id;
    match record.order.status {
        OrderStatus::Pending => {}
        OrderStatus::Cancelled => {
            // Cancelled while the reservation was in flight: give it back now.
            let released = stock::release(
                txn,
                &ctx.config.queues,
                order_id,
                order_id,
                ReleaseReason::Cancelled,
                &record.items,
                now,
            )
            .await?;
            tracing::info!(%order_id, "late reservation of a cancelled order released");
            return Ok(released);
        }
        status => {
            tracing::debug!(%order_id, ?status, "reservation result already applied");
            return Ok(false);
        }
    }
    let capture = Capture {
        order_id,
        amount: record.payment.amount,
        currency: record.payment.currency.clone(),
    };
    let outcome = ctx
        .payments
        .capture(&capture)
        .await
        .context("asking the payment provider")?;
    let mut order = record.order.clone().into_active_model();
    let mut payment = record.payment.clone().into_active_model();
    order.updated_at = Set(now);
    payment.updated_at = Set(now);
    let enqueued = match outcome {
        CaptureOutcome::Captured { reference } => {
            order.status = Set(OrderStatus::Paid);
            order.paid_at = Set(Some(now));
            payment.status = Set(PaymentStatus::Captured);
            payment.provider_reference = Set(Some(reference));
            payment.captured_at = Set(Some(now));
            tracing::info!(%order_id, amount = capture.amount, "order paid");
            false
        }
        CaptureOutcome::Declined { reason } => {
            order.status = Set(OrderStatus::PaymentFailed);
            order.status_reason = Set(Some("payment_declined".into()));
            payment.status = Set(PaymentStatus::Declined);
            payment.declined_at = Set(Some(now));
            store::cancel_unshipped_items(txn, order_id).await?;
            let released = stock::release(
                txn,
                &ctx.config.queues,
                order_id,
                order_id,
                ReleaseReason::PaymentFailed,
                &record.items,
                now,
            )
            .await?;
            tracing::info!(%order_id, %reason, "payment declined; stock released");
            released
        }
    };
    order.update(txn).await?;
    payment.update(txn).await?;
    Ok(enqueued)
}

async fn apply_rejection(
    ctx: &Context,
    txn: &DatabaseTransaction,
    record: OrderRecord,
    rejected: &events::StockRejected,
) -> anyhow::Result<bool> {
    let order_id = record.order.id;
    if record.order.status != OrderStatus::Pending {
        // Already applied, or cancelled meanwhile (then there is nothing to give back either).
        tracing::debug!(%order_id, status = ?record.order.status, "rejection needs nothing more");
        return Ok(false);
    }
    let now = ctx.clock.now();
    let shortages: Vec<serde_json::Value> = rejected
        .short
        .iter()
        .map(|short| {
            serde_json::json!({
                "product_id": short.product_id,
                "requested": short.requested,
                "available": short.available,
            })
        })
        .collect();
    let mut order = record.order.into_active_model();
    order.status = Set(OrderStatus::Rejected);
    // The machine code first, then the short products (what the customer needs to know).
    let short_ids: Vec<&str> = rejected.short.iter().map(|short| short.product_id.as_str()).collect();
    order.status_reason = Set(Some(format!("out_of_stock: {}", short_ids.join(", "))));
    order.shortages = Set(Some(serde_json::Value::Array(shortages).to_string()));
    order.updated_at = Set(now);
    order.update(txn).await?;
    let mut payment = record.payment.into_active_model();
    payment.status = Set(PaymentStatus::Voided);
    payment.updated_at = Set(now);
    payment.update(txn).await?;
    store::cancel_unshipped_items(txn, order_id).await?;
    tracing::info!(%order_id, short = ?short_ids, "order rejected: out of stock");
    Ok(false)
}

async fn confirm_release(
    ctx: &Context,
    txn: &DatabaseTransaction,
    order_id: Uuid,
    released: &events::StockReleased,
) -> anyhow::Result<bool> {
    let Ok(release_id) = Uuid::parse_str(&released.release_id) else {
        tracing::warn!(release_id = %released.release_id, "StockReleased with a malformed release id; ignored");
        return Ok(false);
    };
    release::Entity::update_many()
        .col_expr(release::Column::ReleasedAt, Expr::value(ctx.clock.now()))
        .filter(release::Column::OrderId.eq(order_id))
        .filter(release::Column::ReleaseId.eq(release_id))
        .filter(release::Column::ReleasedAt.is_null())
        .exec(txn)
        .await?;
    Ok(false)
}
