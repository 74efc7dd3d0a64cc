//! Applies the catalog's stock results to orders, exactly once in effect: each message's id goes
//! into the inbox in the transaction of its effects (a redelivered message changes nothing), and
//! each effect is guarded by the order's state (a result repeated under a new id changes
//! nothing either). The results that have arrived (up to a consumer's prefetch) are applied in
//! one transaction; the consumer runner applies a failed batch again message by message.
//!
//! - StockReserved for a PENDING order: the capture is requested (the order stays PENDING until
//!   the payment worker records the provider's answer: PAID, or PAYMENT_FAILED with the stock
//!   given back; see `settlement`). For an order cancelled while PENDING: its stock went back
//!   with the cancellation.
//! - StockRejected for a PENDING order: REJECTED (`out_of_stock`), the payment voided.
//! - StockReleased: the release is marked confirmed.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::Expr,
};
use shop_platform::{
    outbox::inbox,
    queue::{
        Message, WorkQueue,
        runner::{ConsumerRunner, Handler, Poison, Received, RunnerOptions},
    },
};
use shop_proto::{is_message_type, pb::events};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    context::Context,
    entity::{OrderStatus, PaymentStatus, release},
    settlement,
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
    fn decode(message: &Message) -> Result<Self, Poison> {
        let payload = message.payload.as_slice();
        let undecodable = |error: prost::DecodeError| Poison::new("undecodable", error.to_string());
        match message.kind.as_str() {
            kind if is_message_type::<events::StockReserved>(kind) => events::StockReserved::decode(payload)
                .map(Self::Reserved)
                .map_err(undecodable),
            kind if is_message_type::<events::StockRejected>(kind) => events::StockRejected::decode(payload)
                .map(Self::Rejected)
                .map_err(undecodable),
            kind if is_message_type::<events::StockReleased>(kind) => events::StockReleased::decode(payload)
                .map(Self::Released)
                .map_err(undecodable),
            other => Err(Poison::new(
                "unexpected_type",
                format!(
                    "unexpected message type {:?}",
                    other.chars().take(80).collect::<String>()
                ),
            )),
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

/// A decoded result and the order it is about.
#[derive(Debug)]
struct Decoded {
    result: StockResult,
    order_id: Uuid,
}

/// Applies stock results to orders.
struct ResultHandler {
    ctx: Context,
}

#[async_trait]
impl Handler for ResultHandler {
    type Item = Decoded;

    fn decode(&self, message: &Message) -> Result<Decoded, Poison> {
        let result = StockResult::decode(message)?;
        let order_id = Uuid::parse_str(result.order_id()).map_err(|_| {
            Poison::new(
                "malformed_id",
                format!(
                    "stock result for a malformed order id {}",
                    shop_platform::grpc::convert::echo(result.order_id(), 40)
                ),
            )
        })?;
        // On the delivery's span (the runner's `process <queue>`), for traces and logs.
        tracing::Span::current().record("shop.order.id", tracing::field::display(order_id));
        Ok(Decoded { result, order_id })
    }

    async fn apply(&self, batch: &[Received<'_, Decoded>]) -> anyhow::Result<()> {
        apply(&self.ctx, batch).await
    }

    fn poison_reasons(&self) -> &'static [&'static str] {
        &["undecodable", "unexpected_type", "malformed_id"]
    }
}

/// Consumes the results queue with `consumers` consumers until `shutdown`.
pub async fn run(ctx: Context, queue: Arc<dyn WorkQueue>, consumers: usize, shutdown: CancellationToken) {
    let name = ctx.config.queues.results.clone();
    let options = RunnerOptions {
        consumers,
        prefetch: PREFETCH,
        batch_size: usize::from(PREFETCH),
        ..RunnerOptions::default()
    };
    ConsumerRunner::new(queue, name, Arc::new(ResultHandler { ctx }), options)
        .run(shutdown)
        .await;
}

/// What a committed batch of results sets in motion.
#[derive(Debug, Default)]
struct AfterCommit {
    /// When the orders rejected were placed (for the reservation-time histogram).
    rejected: Vec<DateTime<Utc>>,
    /// A message was written to the outbox.
    enqueued: bool,
    /// A capture was requested.
    reserved: bool,
}

/// Applies a batch of results in one transaction: each message once per message id (the
/// inbox), each order's row locked in id order (so consumers never wait on each other in a
/// cycle), one after the other.
async fn apply(ctx: &Context, batch: &[Received<'_, Decoded>]) -> anyhow::Result<()> {
    let txn = store::begin_write(&ctx.db).await?;
    let ids: Vec<&str> = batch.iter().map(|one| one.message_id).collect();
    let mut fresh = inbox::claim(&txn, &ids).await?;
    let mut ordered: Vec<&Received<'_, Decoded>> = batch.iter().collect();
    ordered.sort_by_key(|one| one.item.order_id);
    let mut after = AfterCommit::default();
    for one in ordered {
        if !fresh.remove(one.message_id) {
            tracing::debug!(message_id = one.message_id, "stock result seen before");
            one.span.record("shop.outcome", "duplicate");
            continue;
        }
        apply_one(ctx, &txn, one.item, &mut after)
            .instrument(one.span.clone())
            .await?;
    }
    txn.commit().await?;
    for placed_at in after.rejected {
        crate::metrics::reservation_ended(crate::metrics::Reservation::Rejected, placed_at, ctx.clock.now());
    }
    if after.enqueued {
        ctx.relay.wake();
    }
    if after.reserved {
        settlement::wake(ctx);
    }
    Ok(())
}

/// Applies one result for its order inside the batch's transaction.
async fn apply_one(
    ctx: &Context,
    txn: &DatabaseTransaction,
    decoded: &Decoded,
    after: &mut AfterCommit,
) -> anyhow::Result<()> {
    let (order_id, result) = (decoded.order_id, &decoded.result);
    // Reservation results change the order: lock it first.
    let record = match result {
        StockResult::Released(_) => None,
        StockResult::Reserved(_) | StockResult::Rejected(_) => store::lock(txn, order_id).await?,
    };
    tracing::Span::current().record(
        "shop.outcome",
        match (result, &record) {
            (StockResult::Released(_), _) => "released",
            (_, None) => "unknown_order",
            (StockResult::Reserved(_), Some(_)) => "reserved",
            (StockResult::Rejected(_), Some(_)) => "rejected",
        },
    );
    match (result, record) {
        (StockResult::Released(released), _) => after.enqueued |= confirm_release(ctx, txn, order_id, released).await?,
        (_, None) => tracing::error!(%order_id, "stock result for an unknown order; ignored"),
        (StockResult::Reserved(_), Some(record)) => {
            after.enqueued |= apply_reservation(ctx, txn, record).await?;
            after.reserved = true;
        }
        (StockResult::Rejected(rejected), Some(record)) => {
            after
                .rejected
                .extend(apply_rejection(ctx, txn, record, rejected).await?);
        }
    }
    Ok(())
}

async fn apply_reservation(ctx: &Context, txn: &DatabaseTransaction, record: OrderRecord) -> anyhow::Result<bool> {
    let now = ctx.clock.now();
    let order_id = record.order.id;
    match record.order.status {
        OrderStatus::Pending if record.order.stock_reserved_at.is_none() => {}
        OrderStatus::Cancelled => {
            // Cancelled while the reservation was in flight. The cancellation released the
            // order's stock already (the catalog gives back what it reserved, or refuses the
            // reservation if the release came first); orders cancelled before releases were
            // sent at cancellation get theirs now. The release is recorded once either way.
            let released =
                stock::release_order(txn, &ctx.config.queues, &record, ReleaseReason::Cancelled, now).await?;
            if released {
                tracing::info!(%order_id, "late reservation of a cancelled order released");
            }
            return Ok(released);
        }
        status => {
            tracing::debug!(%order_id, ?status, "reservation result already applied");
            return Ok(false);
        }
    }
    // The stock is held: the payment is captured after this commit (see `settlement`).
    let mut order = record.order.clone().into_active_model();
    order.stock_reserved_at = Set(Some(now));
    order.updated_at = Set(now);
    order.update(txn).await?;
    settlement::request_capture(txn, &record).await?;
    tracing::debug!(%order_id, "stock reserved; capture requested");
    Ok(false)
}

async fn apply_rejection(
    ctx: &Context,
    txn: &DatabaseTransaction,
    record: OrderRecord,
    rejected: &events::StockRejected,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let order_id = record.order.id;
    if record.order.status != OrderStatus::Pending {
        // Already applied, or cancelled meanwhile (then there is nothing to give back either).
        tracing::debug!(%order_id, status = ?record.order.status, "rejection needs nothing more");
        return Ok(None);
    }
    let placed_at = record.order.placed_at;
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
    Ok(Some(placed_at))
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
