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

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sea_orm::ConnectionTrait as _;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::Expr};
use shop_platform::db::one_of;
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
    entity::{ItemStatus, OrderStatus, PaymentStatus, order, payment, payment_task, release},
    settlement,
    stock::{self, ReleaseReason},
    store::{self, OrderRecord},
};

/// Unsettled deliveries one consumer holds at a time, and the most results applied in one
/// transaction.
const PREFETCH: u16 = 64;
/// How long a consumer waits for more results once one has arrived, up to [`PREFETCH`]: the
/// results of one catalog batch arrive spread over a few milliseconds, and one transaction for
/// all of them costs the database far less than one for each.
const LINGER: Duration = Duration::from_millis(5);

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
        linger: LINGER,
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
    /// The captures requested, taken for this process's payment worker.
    captures: Vec<payment_task::Model>,
}

/// What a batch of results changes, decided against the locked orders and then written with a
/// few statements for the whole batch.
#[derive(Debug, Default)]
struct Changes {
    /// Orders whose stock is now held: a capture is requested for each.
    reserved: Vec<Uuid>,
    /// Orders refused for want of stock: their status reason and shortages (JSON), by order.
    rejected: Vec<(Uuid, String, String)>,
}

/// Applies a batch of results in one transaction: each message once per message id (the
/// inbox), the orders they are about locked together in id order (so consumers never wait on
/// each other in a cycle), each result decided in turn against its order's state as the results
/// before it left it, then the changes written with a few statements for the whole batch. In a
/// flash sale every order gets a result: one statement per change and order was most of what
/// the database did (docs/benchmarks.md).
async fn apply(ctx: &Context, batch: &[Received<'_, Decoded>]) -> anyhow::Result<()> {
    learn_stock(ctx, batch);
    let txn = store::begin_write(&ctx.db).await?;
    let ids: Vec<&str> = batch.iter().map(|one| one.message_id).collect();
    let mut fresh = inbox::claim(&txn, &ids).await?;
    let mut ordered: Vec<&Received<'_, Decoded>> = Vec::with_capacity(batch.len());
    for one in batch {
        if fresh.remove(one.message_id) {
            ordered.push(one);
        } else {
            tracing::debug!(message_id = one.message_id, "stock result seen before");
            one.span.record("shop.outcome", "duplicate");
        }
    }
    ordered.sort_by_key(|one| one.item.order_id);
    // Reservation results change their order: lock them all first.
    let mut to_lock: Vec<Uuid> = ordered
        .iter()
        .filter(|one| !matches!(one.item.result, StockResult::Released(_)))
        .map(|one| one.item.order_id)
        .collect();
    to_lock.dedup();
    let mut orders: HashMap<Uuid, order::Model> = store::lock_orders(&txn, &to_lock)
        .await?
        .into_iter()
        .map(|order| (order.id, order))
        .collect();
    let now = ctx.clock.now();
    let mut after = AfterCommit::default();
    let mut changes = Changes::default();
    for one in ordered {
        let order = orders.get_mut(&one.item.order_id);
        decide(ctx, &txn, one.item, order, now, &mut changes, &mut after)
            .instrument(one.span.clone())
            .await?;
    }
    after.captures = write(ctx, &txn, &orders, &changes, now).await?;
    txn.commit().await?;
    for placed_at in after.rejected {
        crate::metrics::reservation_ended(crate::metrics::Reservation::Rejected, placed_at, ctx.clock.now());
    }
    if after.enqueued {
        ctx.relay.wake();
    }
    ctx.payments_due.hand(after.captures);
    Ok(())
}

/// Tells the catalog's recent answers what each rejection says is left of its short products
/// (`RecentProducts::learn_shortages`), so that the orders placed next are refused at placement
/// rather than sent to the catalog to be refused. This holds whether or not the batch commits:
/// it is the catalog's decision, made when it wrote the message (the time its UUIDv7 id carries;
/// a message without one teaches nothing).
fn learn_stock(ctx: &Context, batch: &[Received<'_, Decoded>]) {
    for one in batch {
        if let StockResult::Rejected(rejected) = &one.item.result
            && let Some(decided_at) = message_time(one.message_id)
        {
            ctx.recent_products.learn_shortages(&rejected.short, decided_at);
        }
    }
}

/// When a message with a UUIDv7 id (as the outbox gives them) was written.
fn message_time(message_id: &str) -> Option<DateTime<Utc>> {
    let (seconds, nanos) = Uuid::parse_str(message_id).ok()?.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
}

/// Decides what one result does to its order (`order`, locked; `None` for an unknown order or
/// a release), updating the row in memory so that a later result of the batch sees it. The
/// rare cases (a release confirmed, a late reservation of a cancelled order) are written at once.
async fn decide(
    ctx: &Context,
    txn: &DatabaseTransaction,
    decoded: &Decoded,
    order: Option<&mut order::Model>,
    now: DateTime<Utc>,
    changes: &mut Changes,
    after: &mut AfterCommit,
) -> anyhow::Result<()> {
    let (order_id, result) = (decoded.order_id, &decoded.result);
    tracing::Span::current().record(
        "shop.outcome",
        match (result, &order) {
            (StockResult::Released(_), _) => "released",
            (_, None) => "unknown_order",
            (StockResult::Reserved(_), Some(_)) => "reserved",
            (StockResult::Rejected(_), Some(_)) => "rejected",
        },
    );
    match (result, order) {
        (StockResult::Released(released), _) => after.enqueued |= confirm_release(ctx, txn, order_id, released).await?,
        (_, None) => tracing::error!(%order_id, "stock result for an unknown order; ignored"),
        (StockResult::Reserved(_), Some(order)) => {
            after.enqueued |= apply_reservation(ctx, txn, order, now, changes).await?;
        }
        (StockResult::Rejected(rejected), Some(order)) => {
            after.rejected.extend(apply_rejection(order, rejected, now, changes));
        }
    }
    Ok(())
}

async fn apply_reservation(
    ctx: &Context,
    txn: &DatabaseTransaction,
    order: &mut order::Model,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> anyhow::Result<bool> {
    let order_id = order.id;
    match order.status {
        OrderStatus::Pending if order.stock_reserved_at.is_none() => {}
        OrderStatus::Cancelled => {
            // Cancelled while the reservation was in flight. The cancellation released the
            // order's stock already (the catalog gives back what it reserved, or refuses the
            // reservation if the release came first); orders cancelled before releases were
            // sent at cancellation get theirs now. The release is recorded once either way.
            let record = store::complete(txn, vec![order.clone()]).await?.remove(0);
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
    order.stock_reserved_at = Some(now);
    order.updated_at = now;
    changes.reserved.push(order_id);
    tracing::debug!(%order_id, "stock reserved; capture requested");
    Ok(false)
}

/// Rejects a PENDING order; returns when it was placed (for the reservation-time histogram).
fn apply_rejection(
    order: &mut order::Model,
    rejected: &events::StockRejected,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> Option<DateTime<Utc>> {
    let order_id = order.id;
    if order.status != OrderStatus::Pending {
        // Already applied, or cancelled meanwhile (then there is nothing to give back either).
        tracing::debug!(%order_id, status = ?order.status, "rejection needs nothing more");
        return None;
    }
    // The payment voided and the items cancelled are written for the batch (`write`).
    let (reason, shortages) = reject_order(order, rejected, now);
    tracing::info!(%order_id, %reason, "order rejected: out of stock");
    changes.rejected.push((order_id, reason, shortages));
    Some(order.placed_at)
}

/// Makes `record` what a rejection for want of stock leaves: REJECTED, with the reason (the
/// machine code, then the short products) and the shortages (JSON), the payment voided and the
/// unshipped items cancelled, as of `now`. Returns the reason and the shortages. The catalog's
/// StockRejected comes here, and so does an order found sold out at placement
/// (`placements`), so both read the same.
pub(crate) fn reject(
    record: &mut OrderRecord,
    rejected: &events::StockRejected,
    now: DateTime<Utc>,
) -> (String, String) {
    let (reason, shortages) = reject_order(&mut record.order, rejected, now);
    record.payment.status = PaymentStatus::Voided;
    record.payment.updated_at = now;
    for item in &mut record.items {
        if item.status == ItemStatus::Ordered {
            item.status = ItemStatus::Cancelled;
        }
    }
    (reason, shortages)
}

/// What [`reject`] does to the order's row; returns the reason and the shortages.
fn reject_order(order: &mut order::Model, rejected: &events::StockRejected, now: DateTime<Utc>) -> (String, String) {
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
    // The machine code first, then the short products (what the customer needs to know).
    let short_ids: Vec<&str> = rejected.short.iter().map(|short| short.product_id.as_str()).collect();
    let reason = format!("out_of_stock: {}", short_ids.join(", "));
    let shortages = serde_json::Value::Array(shortages).to_string();
    order.status = OrderStatus::Rejected;
    order.status_reason = Some(reason.clone());
    order.shortages = Some(shortages.clone());
    order.updated_at = now;
    (reason, shortages)
}

/// Writes a batch's `changes`: one UPDATE for the reserved orders and a multi-row insert of
/// their capture tasks (returned, to hand to the payment worker once committed); for the
/// rejected ones, one UPDATE per distinct reason and shortages (in a sale of one product, one
/// or a few), their payments voided and unshipped items cancelled with one statement each.
async fn write(
    ctx: &Context,
    txn: &DatabaseTransaction,
    orders: &HashMap<Uuid, order::Model>,
    changes: &Changes,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<payment_task::Model>> {
    let mut captures = Vec::new();
    if !changes.reserved.is_empty() {
        order::Entity::update_many()
            .col_expr(order::Column::StockReservedAt, Expr::value(now))
            .col_expr(order::Column::UpdatedAt, Expr::value(now))
            .filter(one_of(
                txn.get_database_backend(),
                order::Column::Id,
                changes.reserved.iter().copied(),
            ))
            .exec(txn)
            .await?;
        let reserved: Vec<&order::Model> = changes.reserved.iter().filter_map(|id| orders.get(id)).collect();
        captures = settlement::request_captures(txn, &reserved, ctx.config.payment_timeout).await?;
    }
    if !changes.rejected.is_empty() {
        let mut by_reason: BTreeMap<(&str, &str), Vec<Uuid>> = BTreeMap::new();
        for (order_id, reason, shortages) in &changes.rejected {
            by_reason.entry((reason, shortages)).or_default().push(*order_id);
        }
        for ((reason, shortages), order_ids) in by_reason {
            order::Entity::update_many()
                .col_expr(order::Column::Status, Expr::value(OrderStatus::Rejected))
                .col_expr(order::Column::StatusReason, Expr::value(reason))
                .col_expr(order::Column::Shortages, Expr::value(shortages))
                .col_expr(order::Column::UpdatedAt, Expr::value(now))
                .filter(one_of(txn.get_database_backend(), order::Column::Id, order_ids))
                .exec(txn)
                .await?;
        }
        let rejected: Vec<Uuid> = changes.rejected.iter().map(|(order_id, _, _)| *order_id).collect();
        payment::Entity::update_many()
            .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Voided))
            .col_expr(payment::Column::UpdatedAt, Expr::value(now))
            .filter(one_of(
                txn.get_database_backend(),
                payment::Column::OrderId,
                rejected.iter().copied(),
            ))
            .exec(txn)
            .await?;
        store::cancel_unshipped_items_of(txn, &rejected).await?;
    }
    Ok(captures)
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
