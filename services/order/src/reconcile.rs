//! Nothing waits forever. An order stays `pending` until the catalog answers its ReserveStock;
//! if that answer is slow (a backlog), lost (an operator purged a queue) or never coming (the
//! message was dead-lettered), the reconciler acts:
//!
//! - after `retry_after` without an answer, it asks again: a new ReserveStock for the order,
//!   and again after each further `retry_after`. The catalog keys reservations by order id, so
//!   a repeated ask reserves nothing twice; it answers with the outcome it already decided
//!   (which is why the ask goes out under a new message id: under the old one the catalog's
//!   inbox would drop it unanswered);
//! - after `give_up_after` without an answer, it rejects the order (`reservation_timeout`),
//!   voids its payment and releases its stock. The catalog gives back whatever it reserved, or,
//!   if the release arrives before any reservation, closes the order so a late ReserveStock
//!   takes nothing.
//!
//! Orders whose stock is reserved and whose capture is under way are not the reconciler's:
//! the payment worker retries the capture until the provider answers.
//!
//! Safe with several replicas: each pass takes its orders with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL (the SQLite write transaction serialises passes), and re-checks their state.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait as _;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, LockBehavior, LockType},
};
use shop_platform::backoff::Backoff;
use shop_platform::db::one_of;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    clock,
    config::StockQueues,
    context::Context,
    entity::{OrderStatus, PaymentStatus, order},
    stock::{self, ReleaseReason},
    store::{self, OrderRecord},
};

/// Orders handled per transaction.
const BATCH: u64 = 100;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Orders whose reservation was asked again.
    pub asked_again: u64,
    /// Orders rejected for want of an answer, their stock released.
    pub timed_out: u64,
}

/// Finds pending orders the catalog has not answered, and acts on them.
#[derive(Clone, Debug)]
pub struct Reconciler {
    ctx: Context,
}

impl Reconciler {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// Runs a pass every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(interval, interval.saturating_mul(12));
        loop {
            let pause = match self.tick().await {
                Ok(done) => {
                    if done != Reconciled::default() {
                        tracing::info!(
                            asked_again = done.asked_again,
                            timed_out = done.timed_out,
                            "pending orders reconciled"
                        );
                    }
                    backoff.reset();
                    interval
                }
                Err(error) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(error = format!("{error:#}"), retry_in = ?pause, "reconciliation pass failed");
                    pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One pass, as of the clock's now: first the orders past `give_up_after`, then the ones
    /// to ask again.
    pub async fn tick(&self) -> anyhow::Result<Reconciled> {
        let timed_out = self
            .act_on_due(Repair::Reject)
            .await
            .context("rejecting unanswered orders")?;
        let asked_again = self
            .act_on_due(Repair::AskAgain)
            .await
            .context("asking again for reservations")?;
        Ok(Reconciled { asked_again, timed_out })
    }

    /// Pending orders the catalog has not answered (stock not reserved) placed before `placed_before`
    /// and matching `extra`, locked.
    async fn unanswered(
        &self,
        txn: &DatabaseTransaction,
        placed_before: DateTime<Utc>,
        extra: Condition,
    ) -> anyhow::Result<Vec<OrderRecord>> {
        let orders = order::Entity::find()
            .filter(order::Column::Status.eq(OrderStatus::Pending))
            .filter(order::Column::StockReservedAt.is_null())
            .filter(order::Column::PlacedAt.lte(placed_before))
            .filter(extra)
            .order_by_asc(order::Column::PlacedAt)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(txn)
            .await?;
        store::complete(txn, orders).await
    }

    /// Does `action` to every order due for it, a batch per transaction: rejects those
    /// unanswered for `give_up_after`, or asks again for those unanswered (and not asked) for
    /// `retry_after`.
    async fn act_on_due(&self, action: Repair) -> anyhow::Result<u64> {
        let config = &self.ctx.config.reconcile;
        let mut total = 0;
        loop {
            let txn = store::begin_write(&self.ctx.db).await?;
            let now = self.ctx.clock.now();
            let due = match action {
                Repair::Reject => {
                    self.unanswered(&txn, clock::before(now, config.give_up_after), Condition::all())
                        .await?
                }
                Repair::AskAgain => {
                    let last_ask_before = clock::before(now, config.retry_after);
                    let not_asked_lately = Condition::any()
                        .add(order::Column::ReserveAskedAt.is_null())
                        .add(order::Column::ReserveAskedAt.lte(last_ask_before));
                    self.unanswered(&txn, last_ask_before, not_asked_lately).await?
                }
            };
            let count = due.len() as u64;
            let rejected = act(&txn, &self.ctx.config.queues, due, action, now).await?;
            txn.commit().await?;
            rejections_committed(&rejected, now);
            if count > 0 {
                tracing::info!(count, ?action, "unanswered orders reconciled");
                self.ctx.relay.wake();
            }
            total += count;
            if count < BATCH {
                return Ok(total);
            }
        }
    }
}

/// What an operator asks for stranded orders (`shop-admin orders repair`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Ask the catalog again now, without waiting for the next period.
    AskAgain,
    /// Give up now: reject the order (`reservation_timeout`) and release its stock.
    Reject,
}

/// Repairs the orders `ids` at once, as the reconciler would in time: those still pending and
/// unanswered are asked for again or rejected; the others are left alone. The messages go out
/// through the order service's outbox (its relay publishes them). Returns the orders repaired.
pub async fn repair(
    db: &DatabaseConnection,
    queues: &StockQueues,
    ids: &[Uuid],
    repair: Repair,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    let txn = store::begin_write(db).await?;
    let orders = order::Entity::find()
        .filter(one_of(
            txn.get_database_backend(),
            order::Column::Id,
            ids.iter().copied(),
        ))
        .filter(order::Column::Status.eq(OrderStatus::Pending))
        .filter(order::Column::StockReservedAt.is_null())
        .order_by_asc(order::Column::PlacedAt)
        .lock_exclusive()
        .all(&txn)
        .await?;
    let records = store::complete(&txn, orders).await?;
    let repaired: Vec<Uuid> = records.iter().map(|record| record.order.id).collect();
    let rejected = act(&txn, queues, records, repair, now).await?;
    txn.commit().await?;
    rejections_committed(&rejected, now);
    Ok(repaired)
}

/// Does `action` to `records`, in the caller's transaction. Returns when the orders it rejected
/// were placed.
async fn act(
    txn: &DatabaseTransaction,
    queues: &StockQueues,
    records: Vec<OrderRecord>,
    action: Repair,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<DateTime<Utc>>> {
    match action {
        Repair::AskAgain => ask_again_for(txn, queues, &records, now).await.map(|()| Vec::new()),
        Repair::Reject => {
            let mut placed = Vec::with_capacity(records.len());
            for record in records {
                placed.push(record.order.placed_at);
                reject_unanswered(txn, queues, record, now).await?;
            }
            Ok(placed)
        }
    }
}

/// Counts the rejections of orders placed at `placed`, once their transaction committed.
fn rejections_committed(placed: &[DateTime<Utc>], now: DateTime<Utc>) {
    for placed_at in placed {
        crate::metrics::reservation_ended(crate::metrics::Reservation::Rejected, *placed_at, now);
    }
}

/// Writes a new ReserveStock for each of `records` and notes when it was asked.
async fn ask_again_for(
    txn: &DatabaseTransaction,
    queues: &StockQueues,
    records: &[OrderRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let messages = records
        .iter()
        .map(|record| stock::reserve(queues, record.order.id, &record.items))
        .collect();
    shop_platform::outbox::enqueue_many(txn, messages).await?;
    let ids: Vec<Uuid> = records.iter().map(|record| record.order.id).collect();
    order::Entity::update_many()
        .col_expr(order::Column::ReserveAskedAt, Expr::value(now))
        .filter(one_of(txn.get_database_backend(), order::Column::Id, ids))
        .exec(txn)
        .await?;
    Ok(())
}

/// Rejects an order the catalog never answered and releases its stock (the catalog gives back
/// what it reserved, if anything).
async fn reject_unanswered(
    txn: &DatabaseTransaction,
    queues: &StockQueues,
    record: OrderRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let order_id = record.order.id;
    let mut order = record.order.clone().into_active_model();
    order.status = Set(OrderStatus::Rejected);
    order.status_reason = Set(Some("reservation_timeout".into()));
    order.updated_at = Set(now);
    order.update(txn).await?;
    let mut payment = record.payment.clone().into_active_model();
    payment.status = Set(PaymentStatus::Voided);
    payment.updated_at = Set(now);
    payment.update(txn).await?;
    store::cancel_unshipped_items(txn, order_id).await?;
    stock::release_order(txn, queues, &record, ReleaseReason::TimedOut, now).await?;
    tracing::warn!(%order_id, placed_at = %record.order.placed_at, "order rejected: the catalog never answered its reservation");
    Ok(())
}
