//! Money after commit. A state change that moves money (a reservation to pay for, a
//! cancellation or a return to refund) records a [`payment_task`] row in its own transaction
//! and commits; the provider is called only afterwards, outside any transaction and without
//! the order's row lock, with a timeout; its answer is recorded in a second transaction. So:
//!
//! - a provider that hangs holds no lock and no connection, and delays only its own order;
//! - a provider that fails (or times out) is asked again later, with backoff, for as long as
//!   it takes; the task's id is the provider's idempotency key, so asking twice moves the money
//!   once;
//! - a caller that disconnects, or a process that dies, between the commit and the provider's
//!   answer leaves a task that the [`PaymentWorker`] of any replica carries out: a refund is
//!   never paid with the order still `paid`, and never lost.
//!
//! A worker takes a task with one conditional UPDATE (`next_attempt_at <= now`, moved past its
//! attempt), so replicas never carry out the same task at once; outcomes are recorded only
//! while the task is still `requested`, so a second answer changes nothing. The capture every
//! served order needs is written already taken, by the transaction that applies its stock
//! result, and handed to the worker of that process after the commit ([`PaymentsDue`]): no
//! UPDATE to take it, no wait for a pass. The worker carries out a handed capture only while
//! its lease has the provider's timeout left; one whose lease ran short waiting (a slow
//! provider, a backlog), or whose process died first, comes due when the lease runs out, and
//! any replica's worker takes it then. Task times come from the wall clock (they pace
//! infrastructure), business times from the service's clock.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use sea_orm::{
    ActiveEnum as _, ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement, TryIntoModel,
    sea_query::{Expr, ExprTrait as _},
};
use shop_platform::{
    backoff::Backoff,
    db::{INSERT_CHUNK, insert_chunked_or_skip},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    context::Context,
    entity::{
        OrderStatus, PaymentStatus, order, payment,
        payment_task::{self, TaskKind, TaskState},
        refund,
    },
    payment::{Capture, CaptureOutcome, Refund},
    stock::{self, ReleaseReason},
    store::{self, OrderRecord},
};

/// Tasks carried out at once by one worker.
const CONCURRENCY: usize = 16;
/// Tasks taken per pass.
const BATCH: u64 = 64;
/// How long a worker holds a task beyond the provider timeout before another may take it: time
/// to record the answer. Correctness does not depend on it (a second attempt asks the provider
/// under the same idempotency key, and only the first record counts).
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often the worker looks for due tasks when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);
/// Retry pauses after provider failures: 1 s doubling to 5 min.
fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(300))
}

/// The capture task of an order; its id is the provider's idempotency key for the capture.
pub fn capture_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&order_id, b"shop.capture")
}

/// The refund task of a cancellation (whole order) or a return (one item). Derived from what is
/// refunded, never random: a cancel or return asked twice refunds once.
pub fn refund_id(order_id: Uuid, item_id: Option<Uuid>) -> Uuid {
    match item_id {
        Some(item_id) => Uuid::new_v5(&item_id, b"shop.refund.return"),
        None => Uuid::new_v5(&order_id, b"shop.refund.cancel"),
    }
}

/// Records, in the caller's transaction, that each order's total (its payment's amount, set
/// from it at placement) is to be captured (multi-row inserts; an order whose capture was
/// requested already keeps its task). The tasks are written already taken for their first
/// attempt, as [`take_due`] would take them: once the transaction commits, the caller hands
/// them to this process's worker ([`PaymentsDue::hand`]), which carries them out without
/// taking them again; if the process dies first, they come due when the lease runs out.
pub(crate) async fn request_captures<C: ConnectionTrait>(
    conn: &C,
    orders: &[&order::Model],
    payment_timeout: Duration,
) -> Result<Vec<payment_task::Model>, DbErr> {
    let now = Utc::now();
    let taken: Vec<payment_task::ActiveModel> = orders
        .iter()
        .map(|order| {
            let mut task = new_task(
                capture_id(order.id),
                order.id,
                TaskKind::Capture,
                None,
                order.total,
                &order.currency,
                now,
            );
            task.next_attempt_at = Set(now + lease(payment_timeout));
            task.attempts = Set(1);
            task
        })
        .collect();
    // Handed as written. An order's capture is requested once (with its `stock_reserved_at`,
    // in the same transaction), so none exists already; if one did, the worker would only ask
    // the provider again under the same key, and its answer would count only if still open.
    let handed = taken
        .iter()
        .map(|task| task.clone().try_into_model())
        .collect::<Result<_, _>>()?;
    insert_tasks(conn, taken).await?;
    Ok(handed)
}

/// How long an attempt holds its task: the provider's timeout and the time to record the answer.
fn lease(payment_timeout: Duration) -> chrono::Duration {
    wall(payment_timeout + LEASE_MARGIN)
}

/// `span` on the wall clock that task times use (saturating).
fn wall(span: Duration) -> chrono::Duration {
    chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX)
}

/// Records, in the caller's transaction, that `amount` of `payment` is to be refunded (for
/// `item_id`, or the whole order). Returns the task's id.
pub(crate) async fn request_refund<C: ConnectionTrait>(
    conn: &C,
    payment: &payment::Model,
    item_id: Option<Uuid>,
    amount: i64,
) -> Result<Uuid, DbErr> {
    let id = refund_id(payment.order_id, item_id);
    let task = new_task(
        id,
        payment.order_id,
        TaskKind::Refund,
        item_id,
        amount,
        &payment.currency,
        Utc::now(),
    );
    insert_tasks(conn, vec![task]).await?;
    Ok(id)
}

/// A task due now.
fn new_task(
    id: Uuid,
    order_id: Uuid,
    kind: TaskKind,
    item_id: Option<Uuid>,
    amount: i64,
    currency: &str,
    now: DateTime<Utc>,
) -> payment_task::ActiveModel {
    payment_task::ActiveModel {
        id: Set(id),
        order_id: Set(order_id),
        kind: Set(kind),
        item_id: Set(item_id),
        amount: Set(amount),
        currency: Set(currency.to_owned()),
        state: Set(TaskState::Requested),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        provider_reference: Set(None),
        created_at: Set(now),
        completed_at: Set(None),
    }
}

/// Inserts `tasks`, leaving out those whose id exists (a task is requested once: its id is
/// derived from what it pays or refunds), in statements of at most [`INSERT_CHUNK`] rows.
async fn insert_tasks<C: ConnectionTrait>(conn: &C, tasks: Vec<payment_task::ActiveModel>) -> Result<(), DbErr> {
    insert_chunked_or_skip(
        conn,
        tasks,
        sea_orm::sea_query::OnConflict::column(payment_task::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .await
}

/// The payment worker's door: the captures this process's commits handed to it, already taken
/// for their first attempt ([`request_captures`]), and its wake-up for tasks it has to find in
/// the database (a refund's retry, one left by a worker that died). Shared through the
/// service's context.
#[derive(Debug, Default)]
pub struct PaymentsDue {
    handed: Mutex<Vec<payment_task::Model>>,
    wake: Notify,
}

impl PaymentsDue {
    /// Gives the worker `tasks` to carry out (call after the commit that wrote them).
    pub(crate) fn hand(&self, tasks: Vec<payment_task::Model>) {
        if tasks.is_empty() {
            return;
        }
        self.handed.lock().unwrap_or_else(PoisonError::into_inner).extend(tasks);
        self.wake.notify_one();
    }

    /// Wakes the worker (after a commit that requested a task it has to find).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether tasks were handed and not yet taken.
    fn any_handed(&self) -> bool {
        !self.handed.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Up to a batch of the handed tasks whose lease still has `payment_timeout` left, oldest
    /// first; those with less are dropped, to be taken from the database with a fresh lease
    /// once it runs out, rather than asked while another worker may take them.
    fn take_handed(&self, payment_timeout: Duration) -> Vec<payment_task::Model> {
        let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        let ask_before = Utc::now() + wall(payment_timeout);
        handed.retain(|task| task.next_attempt_at > ask_before);
        let count = handed.len().min(usize::try_from(BATCH).unwrap_or(usize::MAX));
        handed.drain(..count).collect()
    }
}

/// Carries out open payment tasks: those handed to it after commits that requested them, and,
/// polling, those due in the database (after a failure, or left by a worker that died).
#[derive(Clone, Debug)]
pub struct PaymentWorker {
    ctx: Context,
    /// When a pass last looked for due tasks in the database.
    scanned_at: Option<Instant>,
}

impl PaymentWorker {
    /// A worker for the service's tasks.
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx, scanned_at: None }
    }

    /// Works until `shutdown`; a task being carried out is finished first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(POLL, Duration::from_secs(30));
        loop {
            let pause = match self.run_due().await {
                Ok(count) if count as u64 >= BATCH => Duration::ZERO,
                Ok(_) => {
                    backoff.reset();
                    POLL
                }
                Err(error) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(error = format!("{error:#}"), retry_in = ?pause, "payment worker pass failed");
                    pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.ctx.payments_due.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One pass: the tasks due now in the database (up to a batch, taken with one UPDATE) when
    /// nothing was handed to it or its last look was [`POLL`] ago, then the tasks handed to it
    /// (a look that fails leaves them queued for the next pass); asks the provider for each
    /// (several at once), and records the answers in one transaction. Returns how many it
    /// carried out.
    pub async fn run_due(&mut self) -> anyhow::Result<usize> {
        let due = if !self.ctx.payments_due.any_handed() || self.scan_due() {
            take_due(&self.ctx).await?
        } else {
            Vec::new()
        };
        let mut tasks = self.ctx.payments_due.take_handed(self.ctx.config.payment_timeout);
        tasks.extend(due);
        let count = tasks.len();
        let ctx = &self.ctx;
        let answers: Vec<(payment_task::Model, Outcome)> = futures::stream::iter(tasks)
            .map(|task| async move {
                let outcome = ask(ctx, &task).await;
                (task, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|(task, outcome)| async move { outcome.map(|outcome| (task, outcome)) })
            .collect()
            .await;
        record(ctx, answers).await?;
        Ok(count)
    }

    /// Whether this pass looks for due tasks in the database besides those handed to it: at
    /// least every [`POLL`], so that a steady flow of handed tasks never starves the retries.
    fn scan_due(&mut self) -> bool {
        if self.scanned_at.is_some_and(|at| at.elapsed() < POLL) {
            return false;
        }
        self.scanned_at = Some(Instant::now());
        true
    }
}

/// Carries out task `id` now, unless another worker holds it or it is finished. An `Err` means
/// the outcome could not be recorded (the database is down); the task is tried again later.
pub(crate) async fn attempt(ctx: &Context, id: Uuid) -> anyhow::Result<()> {
    let Some(task) = take(ctx, id).await? else {
        return Ok(());
    };
    match ask(ctx, &task).await {
        Some(outcome) => record(ctx, vec![(task, outcome)]).await,
        None => Ok(()),
    }
}

/// Asks the provider to carry out `task`, within the payment timeout. `None` when it failed or
/// did not answer: the task is postponed (tried again after a pause).
async fn ask(ctx: &Context, task: &payment_task::Model) -> Option<Outcome> {
    let error = match tokio::time::timeout(ctx.config.payment_timeout, call_provider(ctx, task)).await {
        Ok(Ok(outcome)) => return Some(outcome),
        Ok(Err(error)) => format!("{error:#}"),
        Err(_elapsed) => format!(
            "the payment provider did not answer within {:?}",
            ctx.config.payment_timeout
        ),
    };
    if let Err(error) = postpone(ctx, task, &error).await {
        // The lease runs out and the task is taken again then.
        tracing::warn!(task_id = %task.id, error = format!("{error:#}"), "could not postpone a payment task");
    }
    None
}

/// Takes task `id` for one attempt: one conditional UPDATE, so at most one worker wins.
async fn take(ctx: &Context, id: Uuid) -> anyhow::Result<Option<payment_task::Model>> {
    let mut taken = take_where(ctx, payment_task::Column::Id.eq(id))
        .await
        .context("taking a payment task")?;
    Ok(taken.pop())
}

/// Takes the tasks due now, oldest first, up to a batch, with one UPDATE. A task another
/// worker takes meanwhile fails the UPDATE's own conditions and is left to it.
async fn take_due(ctx: &Context) -> anyhow::Result<Vec<payment_task::Model>> {
    let due = payment_task::Entity::find()
        .select_only()
        .column(payment_task::Column::Id)
        .filter(payment_task::Column::State.eq(TaskState::Requested))
        .filter(payment_task::Column::NextAttemptAt.lte(Utc::now()))
        .order_by_asc(payment_task::Column::NextAttemptAt)
        .limit(BATCH)
        .as_query()
        .to_owned();
    take_where(ctx, payment_task::Column::Id.in_subquery(due))
        .await
        .context("taking due payment tasks")
}

/// Takes the open, due tasks matching `which` for one attempt each: their next attempt moves
/// past the provider timeout (the lease) and their attempts count up.
async fn take_where(ctx: &Context, which: sea_orm::sea_query::SimpleExpr) -> Result<Vec<payment_task::Model>, DbErr> {
    let now = Utc::now();
    payment_task::Entity::update_many()
        .col_expr(
            payment_task::Column::NextAttemptAt,
            Expr::value(now + lease(ctx.config.payment_timeout)),
        )
        .col_expr(
            payment_task::Column::Attempts,
            Expr::col(payment_task::Column::Attempts).add(1),
        )
        .filter(which)
        .filter(payment_task::Column::State.eq(TaskState::Requested))
        .filter(payment_task::Column::NextAttemptAt.lte(now))
        .exec_with_returning(&ctx.db)
        .await
}

/// What the provider said.
#[derive(Clone, Debug)]
enum Outcome {
    Captured(String),
    Declined(String),
    Refunded(String),
}

async fn call_provider(ctx: &Context, task: &payment_task::Model) -> anyhow::Result<Outcome> {
    match task.kind {
        TaskKind::Capture => {
            let capture = Capture {
                order_id: task.order_id,
                amount: task.amount,
                currency: task.currency.clone(),
            };
            Ok(match ctx.payments.capture(&capture).await? {
                CaptureOutcome::Captured { reference } => Outcome::Captured(reference),
                CaptureOutcome::Declined { reason } => Outcome::Declined(reason),
            })
        }
        TaskKind::Refund => {
            let refund = Refund {
                refund_id: task.id,
                order_id: task.order_id,
                amount: task.amount,
                currency: task.currency.clone(),
            };
            Ok(Outcome::Refunded(ctx.payments.refund(&refund).await?))
        }
    }
}

/// The provider failed: try again after a pause that grows with the attempts.
async fn postpone(ctx: &Context, task: &payment_task::Model, error: &str) -> anyhow::Result<()> {
    let failures = u32::try_from(task.attempts).unwrap_or(u32::MAX);
    let pause = retry_backoff().pause_after(failures);
    tracing::warn!(task_id = %task.id, order_id = %task.order_id, kind = ?task.kind, attempts = task.attempts, retry_in = ?pause, %error, "the payment provider failed; the task will be retried");
    payment_task::Entity::update_many()
        .col_expr(
            payment_task::Column::NextAttemptAt,
            Expr::value(Utc::now() + wall(pause)),
        )
        .col_expr(
            payment_task::Column::LastError,
            Expr::value(error.chars().take(500).collect::<String>()),
        )
        .filter(payment_task::Column::Id.eq(task.id))
        .filter(payment_task::Column::State.eq(TaskState::Requested))
        .exec(&ctx.db)
        .await
        .context("postponing a payment task")?;
    Ok(())
}

/// Records what the provider did for each task, in one transaction (each order's row locked,
/// in id order), then sets in motion what the answers call for. If the batch fails, each answer
/// is recorded on its own, so one task's failure is never another's.
async fn record(ctx: &Context, mut answers: Vec<(payment_task::Model, Outcome)>) -> anyhow::Result<()> {
    if answers.is_empty() {
        return Ok(());
    }
    answers.sort_by_key(|(task, _)| task.order_id);
    let follow_ups = match record_together(ctx, &answers).await {
        Ok(follow_ups) => follow_ups,
        Err(error) if answers.len() == 1 => return Err(error),
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                tasks = answers.len(),
                "recording payment answers together failed; recording each alone"
            );
            let mut follow_ups = Vec::new();
            for one in answers.chunks(1) {
                match record_together(ctx, one).await {
                    Ok(mut one) => follow_ups.append(&mut one),
                    Err(error) => {
                        tracing::warn!(task_id = %one[0].0.id, error = format!("{error:#}"), "payment answer not recorded; the task will be retried");
                    }
                }
            }
            follow_ups
        }
    };
    for follow_up in follow_ups {
        if let Some(placed_at) = follow_up.paid {
            crate::metrics::reservation_ended(crate::metrics::Reservation::Paid, placed_at, ctx.clock.now());
        }
        if follow_up.payment_failed {
            crate::metrics::count(crate::metrics::OrderEvent::PaymentFailed);
        }
        if follow_up.released {
            ctx.relay.wake();
        }
        if let Some(refund) = follow_up.refund {
            Box::pin(attempt(ctx, refund)).await?;
        }
    }
    Ok(())
}

/// Records `answers` (sorted by order) in one transaction; what each set in motion.
async fn record_together(ctx: &Context, answers: &[(payment_task::Model, Outcome)]) -> anyhow::Result<Vec<FollowUp>> {
    let txn = store::begin_write(&ctx.db).await?;
    // Every order of the batch locked with one statement; a capture for a PENDING order needs
    // only its row (on PostgreSQL), the other answers read its items and payment too. An
    // order with several answers in the batch (a capture and a refund) is read again for
    // each, so each answer sees what the one before it changed.
    let mut answers_per_order: HashMap<Uuid, usize> = HashMap::new();
    for (task, _) in answers {
        *answers_per_order.entry(task.order_id).or_default() += 1;
    }
    let ids: Vec<Uuid> = answers_per_order.keys().copied().collect();
    let mut locked: HashMap<Uuid, order::Model> = store::lock_orders(&txn, &ids)
        .await?
        .into_iter()
        .map(|order| (order.id, order))
        .collect();
    let mut follow_ups = Vec::with_capacity(answers.len());
    // Captures for PENDING orders, nearly every answer in a sale, are recorded together below
    // (on PostgreSQL), with one statement for their tasks, payments and orders.
    let together = txn.get_database_backend() == DatabaseBackend::Postgres;
    let mut paid = Vec::new();
    for (task, outcome) in answers {
        let single = answers_per_order[&task.order_id] == 1;
        let order = if single {
            locked.remove(&task.order_id)
        } else {
            store::lock_orders(&txn, &[task.order_id]).await?.pop()
        };
        let Some(order) = order else {
            continue;
        };
        if let Outcome::Captured(reference) = outcome
            && together
            && single
            && order.status == OrderStatus::Pending
        {
            paid.push(Paid {
                task_id: task.id,
                order,
                reference: reference.clone(),
            });
            continue;
        }
        let record = store::complete(&txn, vec![order]).await?.remove(0);
        let (state, reference) = match outcome {
            Outcome::Captured(reference) | Outcome::Refunded(reference) => (TaskState::Done, Some(reference.clone())),
            Outcome::Declined(_) => (TaskState::Declined, None),
        };
        let finished = payment_task::Entity::update_many()
            .col_expr(payment_task::Column::State, Expr::value(state))
            .col_expr(payment_task::Column::ProviderReference, Expr::value(reference))
            .col_expr(payment_task::Column::CompletedAt, Expr::value(Utc::now()))
            .filter(payment_task::Column::Id.eq(task.id))
            .filter(payment_task::Column::State.eq(TaskState::Requested))
            .exec(&txn)
            .await?;
        if finished.rows_affected == 0 {
            // Another attempt recorded it first.
            continue;
        }
        let now = ctx.clock.now();
        follow_ups.push(match outcome.clone() {
            Outcome::Captured(reference) => captured(&txn, record, reference, now).await?,
            Outcome::Declined(reason) => declined(ctx, &txn, record, &reason, now).await?,
            Outcome::Refunded(reference) => {
                refunded(&txn, task, &record.payment, reference, now).await?;
                FollowUp::default()
            }
        });
    }
    for chunk in paid.chunks(INSERT_CHUNK) {
        follow_ups.extend(pay_together(&txn, chunk, ctx.clock.now()).await?);
    }
    txn.commit().await?;
    Ok(follow_ups)
}

/// A capture the provider took for a PENDING order, to record.
#[derive(Debug)]
struct Paid {
    task_id: Uuid,
    order: order::Model,
    reference: String,
}

/// Records captures for PENDING orders (locked) with one statement whatever their number
/// (PostgreSQL): their tasks done, where still requested (another attempt may have recorded
/// one first: it is left as it is), and for those tasks the payments captured with the
/// provider's references and the orders PAID, in data-modifying `WITH` clauses. One UPDATE per
/// table and order made three round trips an order paid, one per table three a batch
/// (docs/benchmarks.md).
async fn pay_together(txn: &DatabaseTransaction, paid: &[Paid], now: DateTime<Utc>) -> anyhow::Result<Vec<FollowUp>> {
    let mut values: Vec<sea_orm::Value> = vec![
        TaskState::Done.to_value().into(),
        Utc::now().into(),
        TaskState::Requested.to_value().into(),
        PaymentStatus::Captured.to_value().into(),
        OrderStatus::Paid.to_value().into(),
        now.into(),
    ];
    // The captures as two arrays, unnested into rows: one statement text whatever their
    // number, prepared once per connection (a `VALUES` list has one text per length).
    let (tasks, references): (Vec<Uuid>, Vec<String>) =
        paid.iter().map(|paid| (paid.task_id, paid.reference.clone())).unzip();
    values.push(tasks.into());
    values.push(references.into());
    // The payments and orders are matched on the tasks the first clause finished, so a task
    // recorded by another attempt changes neither.
    let sql = "WITH finished AS (\
           UPDATE payment_tasks AS t SET state = $1, provider_reference = v.reference, completed_at = $2 \
           FROM unnest($7::uuid[], $8::text[]) AS v (id, reference) WHERE t.id = v.id AND t.state = $3 \
           RETURNING t.order_id, v.reference), \
         captured AS (\
           UPDATE payments AS p SET status = $4, provider_reference = f.reference, captured_at = $6, updated_at = $6 \
           FROM finished AS f WHERE p.order_id = f.order_id), \
         paid AS (\
           UPDATE orders AS o SET status = $5, paid_at = $6, updated_at = $6 \
           FROM finished AS f WHERE o.id = f.order_id) \
         SELECT order_id FROM finished";
    let finished: HashSet<Uuid> = txn
        .query_all_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values))
        .await?
        .iter()
        .map(|row| row.try_get::<Uuid>("", "order_id"))
        .collect::<Result<_, _>>()?;
    Ok(paid
        .iter()
        .filter(|paid| finished.contains(&paid.order.id))
        .map(|paid| {
            tracing::info!(order_id = %paid.order.id, amount = paid.order.total, "order paid");
            FollowUp {
                paid: Some(paid.order.placed_at),
                ..FollowUp::default()
            }
        })
        .collect())
}

/// What a recorded outcome set in motion.
#[derive(Debug, Default)]
struct FollowUp {
    /// A ReleaseStock was written to the outbox.
    released: bool,
    /// A refund was requested.
    refund: Option<Uuid>,
    /// The order became PAID; it was placed then.
    paid: Option<DateTime<Utc>>,
    /// The order became PAYMENT_FAILED.
    payment_failed: bool,
}

async fn captured(
    txn: &DatabaseTransaction,
    record: OrderRecord,
    reference: String,
    now: DateTime<Utc>,
) -> anyhow::Result<FollowUp> {
    let order_id = record.order.id;
    let mut payment = record.payment.clone().into_active_model();
    payment.status = Set(PaymentStatus::Captured);
    payment.provider_reference = Set(Some(reference));
    payment.captured_at = Set(Some(now));
    payment.updated_at = Set(now);
    let payment = payment.update(txn).await?;
    match record.order.status {
        OrderStatus::Pending => {
            let placed_at = record.order.placed_at;
            let mut order = record.order.into_active_model();
            order.status = Set(OrderStatus::Paid);
            order.paid_at = Set(Some(now));
            order.updated_at = Set(now);
            order.update(txn).await?;
            tracing::info!(%order_id, amount = payment.amount, "order paid");
            Ok(FollowUp {
                paid: Some(placed_at),
                ..FollowUp::default()
            })
        }
        status => {
            // Cancelled while the capture was under way (its stock went back then): the money
            // goes back too.
            let amount = payment.amount - payment.refunded;
            tracing::info!(%order_id, ?status, amount, "captured for an order that no longer wants it; refunding");
            let refund = request_refund(txn, &payment, None, amount).await?;
            Ok(FollowUp {
                refund: Some(refund),
                ..FollowUp::default()
            })
        }
    }
}

async fn declined(
    ctx: &Context,
    txn: &DatabaseTransaction,
    record: OrderRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<FollowUp> {
    let order_id = record.order.id;
    let mut payment = record.payment.clone().into_active_model();
    payment.status = Set(PaymentStatus::Declined);
    payment.declined_at = Set(Some(now));
    payment.updated_at = Set(now);
    payment.update(txn).await?;
    if record.order.status != OrderStatus::Pending {
        // Cancelled meanwhile: its stock already went back.
        return Ok(FollowUp::default());
    }
    let mut order = record.order.clone().into_active_model();
    order.status = Set(OrderStatus::PaymentFailed);
    order.status_reason = Set(Some("payment_declined".into()));
    order.updated_at = Set(now);
    order.update(txn).await?;
    store::cancel_unshipped_items(txn, order_id).await?;
    let released = stock::release_order(txn, &ctx.config.queues, &record, ReleaseReason::PaymentFailed, now).await?;
    tracing::info!(%order_id, %reason, "payment declined; stock released");
    Ok(FollowUp {
        released,
        payment_failed: true,
        ..FollowUp::default()
    })
}

async fn refunded(
    txn: &DatabaseTransaction,
    task: &payment_task::Model,
    payment: &payment::Model,
    reference: String,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    refund::ActiveModel {
        id: Set(task.id),
        order_id: Set(task.order_id),
        item_id: Set(task.item_id),
        amount: Set(task.amount),
        provider_reference: Set(reference),
        created_at: Set(now),
    }
    .insert(txn)
    .await?;
    let refunded = payment.refunded.saturating_add(task.amount);
    let mut updated = payment.clone().into_active_model();
    updated.refunded = Set(refunded);
    updated.status = Set(if refunded >= payment.amount {
        PaymentStatus::Refunded
    } else {
        PaymentStatus::PartiallyRefunded
    });
    updated.updated_at = Set(now);
    updated.update(txn).await?;
    tracing::info!(order_id = %task.order_id, amount = task.amount, "refunded");
    Ok(())
}

/// Wakes the payment worker (after a commit that requested a task it has to find).
pub(crate) fn wake(ctx: &Context) {
    ctx.payments_due.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A capture handed with `lease_left` of its lease to run.
    fn handed(lease_left: chrono::Duration) -> payment_task::Model {
        let order_id = Uuid::now_v7();
        let now = Utc::now();
        payment_task::Model {
            id: capture_id(order_id),
            order_id,
            kind: TaskKind::Capture,
            item_id: None,
            amount: 1_000,
            currency: "KRW".into(),
            state: TaskState::Requested,
            attempts: 1,
            next_attempt_at: now + lease_left,
            last_error: None,
            provider_reference: None,
            created_at: now,
            completed_at: None,
        }
    }

    #[test]
    fn a_handed_capture_whose_lease_ran_short_is_left_to_the_database() {
        let due = PaymentsDue::default();
        let fresh = handed(lease(TIMEOUT));
        // Waited in memory until less than the provider's timeout is left: another worker may
        // take it from the database before an answer could be recorded.
        let waited = handed(chrono::Duration::seconds(3));
        due.hand(vec![waited, fresh.clone()]);
        assert_eq!(due.take_handed(TIMEOUT), vec![fresh]);
        assert!(due.take_handed(TIMEOUT).is_empty(), "the short one is not kept either");
    }

    #[test]
    fn a_pass_takes_at_most_a_batch_of_handed_captures_oldest_first() {
        let due = PaymentsDue::default();
        let tasks: Vec<_> = (0..BATCH + 5).map(|_| handed(lease(TIMEOUT))).collect();
        due.hand(tasks.clone());
        let batch = usize::try_from(BATCH).unwrap_or(usize::MAX);
        assert_eq!(due.take_handed(TIMEOUT), tasks[..batch]);
        assert_eq!(due.take_handed(TIMEOUT), tasks[batch..]);
    }
}
