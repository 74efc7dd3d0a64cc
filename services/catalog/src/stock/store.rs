//! One batch, one transaction. In this order, which every worker follows so that two replicas
//! never wait on each other in a cycle:
//!
//! 1. record the message ids in the inbox (sorted); ids already there are duplicates;
//! 2. lock the batch's products (`SELECT … ORDER BY id FOR UPDATE`): replicas touching the same
//!    products queue up here instead of deadlocking, and the same order (always the same
//!    products) is never applied by two replicas at once;
//! 3. read the batch's reservations, and record its releases (sorted), learning which are new;
//! 4. apply the commands in arrival order in the [`Ledger`];
//! 5. write what changed: the net change of each product's stock as a conditional update
//!    (`stock + Δ >= 0`, behind the table's CHECK; on PostgreSQL many products in one
//!    statement), the new reservations and lines, the released quantities, and the answers to
//!    the outbox;
//! 6. commit. The caller acknowledges the deliveries only after this returns.

use std::collections::{BTreeSet, HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use shop_platform::{
    db::{INSERT_CHUNK, insert_chunked, one_of},
    outbox::{self, OutboxMessage, inbox},
};
use uuid::Uuid;

use super::{
    answer::answer,
    command::Command,
    ledger::{HeldLine, Ledger, Outcome, ProductStock, Reservation, Shortage},
};
use crate::{
    entity::{product, reservation, reservation_line},
    products::now,
};

/// One delivery of a batch, decoded.
#[derive(Debug)]
pub struct Pending<'a> {
    /// The message id (empty when the producer set none: then only the business key dedupes).
    pub message_id: &'a str,
    /// What to do.
    pub command: &'a Command,
    /// The delivery's span, joined to the producer's trace: its context goes into the answer.
    pub span: &'a tracing::Span,
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Its message id was applied before (or earlier in this batch): nothing done.
    Duplicate,
    /// Applied with this outcome, and answered.
    Done(Outcome),
}

/// Applies `batch` in one transaction and writes the answers to the outbox for `results_queue`.
/// On error nothing at all was applied.
pub async fn apply_batch(
    db: &DatabaseConnection,
    results_queue: &str,
    batch: &[Pending<'_>],
) -> Result<Vec<Applied>, DbErr> {
    let txn = db.begin().await?;
    let fresh = claim_messages(&txn, batch).await?;
    let commands: Vec<&Command> = batch
        .iter()
        .zip(&fresh)
        .filter(|(_, fresh)| **fresh)
        .map(|(pending, _)| pending.command)
        .collect();
    let products = lock_products(&txn, &commands).await?;
    let reservations = load_reservations(&txn, &commands).await?;
    let releases = claim_releases(&txn, &commands).await?;

    let mut ledger = Ledger::new(products, reservations, releases);
    let mut applied = Vec::with_capacity(batch.len());
    let mut answers = Vec::new();
    for (pending, fresh) in batch.iter().zip(fresh) {
        if !fresh {
            applied.push(Applied::Duplicate);
            continue;
        }
        let outcome = ledger.apply(pending.command);
        let (kind, payload) = answer(pending.command, &outcome);
        answers.push(
            pending
                .span
                .in_scope(|| OutboxMessage::new(results_queue, &kind, payload)),
        );
        applied.push(Applied::Done(outcome));
    }

    write_changes(&txn, &ledger).await?;
    outbox::enqueue_many(&txn, answers).await?;
    txn.commit().await?;
    Ok(applied)
}

/// Step 1: which deliveries are new. The first delivery of an id not yet in the inbox is; later
/// ones with the same id in the batch, and ids already recorded, are not.
async fn claim_messages(txn: &DatabaseTransaction, batch: &[Pending<'_>]) -> Result<Vec<bool>, DbErr> {
    let mut first_seen = HashSet::new();
    let mut fresh: Vec<bool> = batch
        .iter()
        .map(|pending| pending.message_id.is_empty() || first_seen.insert(pending.message_id))
        .collect();
    let ids: Vec<&str> = first_seen.into_iter().collect();
    if ids.is_empty() {
        return Ok(fresh);
    }
    let claimed = inbox::claim(txn, &ids).await?;
    for (pending, fresh) in batch.iter().zip(fresh.iter_mut()) {
        if *fresh && !pending.message_id.is_empty() && !claimed.contains(pending.message_id) {
            *fresh = false;
        }
    }
    Ok(fresh)
}

/// Step 2: the products the commands name, locked in id order.
async fn lock_products(txn: &DatabaseTransaction, commands: &[&Command]) -> Result<HashMap<Uuid, ProductStock>, DbErr> {
    let ids: BTreeSet<Uuid> = commands
        .iter()
        .flat_map(|command| command.lines().iter().map(|line| line.product_id))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, i64, Option<chrono::DateTime<chrono::Utc>>)> = product::Entity::find()
        .select_only()
        .columns([product::Column::Id, product::Column::Stock, product::Column::DeletedAt])
        .filter(one_of(txn.get_database_backend(), product::Column::Id, ids))
        .order_by_asc(product::Column::Id)
        .lock_exclusive()
        .into_tuple()
        .all(txn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, stock, deleted_at)| {
            (
                id,
                ProductStock {
                    stock,
                    deleted: deleted_at.is_some(),
                },
            )
        })
        .collect())
}

/// Step 3a: the stored reservations of the commands' orders, with their lines.
async fn load_reservations(
    txn: &DatabaseTransaction,
    commands: &[&Command],
) -> Result<HashMap<Uuid, Reservation>, DbErr> {
    let orders: BTreeSet<Uuid> = commands.iter().map(|command| command.order_id()).collect();
    let mut reservations = HashMap::new();
    if orders.is_empty() {
        return Ok(reservations);
    }
    let rows = reservation::Entity::find()
        .filter(one_of(txn.get_database_backend(), reservation::Column::OrderId, orders))
        .all(txn)
        .await?;
    let mut reserved = Vec::new();
    for row in rows {
        if row.status == reservation::RESERVED {
            reserved.push(row.order_id);
            reservations.insert(row.order_id, Reservation::Reserved(Default::default()));
        } else {
            let shortages: Vec<Shortage> = row
                .shortages
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default();
            reservations.insert(row.order_id, Reservation::Rejected(shortages));
        }
    }
    if reserved.is_empty() {
        return Ok(reservations);
    }
    let lines = reservation_line::Entity::find()
        .filter(one_of(
            txn.get_database_backend(),
            reservation_line::Column::OrderId,
            reserved,
        ))
        .all(txn)
        .await?;
    for line in lines {
        if let Some(Reservation::Reserved(held)) = reservations.get_mut(&line.order_id) {
            held.insert(
                line.product_id,
                HeldLine {
                    quantity: line.quantity,
                    released: line.released,
                    stored_released: line.released,
                },
            );
        }
    }
    Ok(reservations)
}

/// Step 3b: records the commands' releases; returns those recorded now for the first time.
async fn claim_releases(txn: &DatabaseTransaction, commands: &[&Command]) -> Result<HashSet<(Uuid, Uuid)>, DbErr> {
    let keys: BTreeSet<(Uuid, Uuid)> = commands
        .iter()
        .filter_map(|command| match command {
            Command::Release {
                order_id, release_id, ..
            } => Some((*order_id, *release_id)),
            Command::Reserve { .. } => None,
        })
        .collect();
    let mut claimed = HashSet::new();
    let now = now();
    let keys: Vec<(Uuid, Uuid)> = keys.into_iter().collect();
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert
            .into_table("releases")
            .columns(["order_id", "release_id", "created_at"]);
        for (order, release) in chunk {
            insert.values_panic([(*order).into(), (*release).into(), now.into()]);
        }
        insert
            .on_conflict(OnConflict::columns(["order_id", "release_id"]).do_nothing().to_owned())
            .returning(Query::returning().columns(["order_id", "release_id"]));
        for row in txn.query_all(&insert).await? {
            claimed.insert((row.try_get("", "order_id")?, row.try_get("", "release_id")?));
        }
    }
    Ok(claimed)
}

/// Changes the stock of several products in one statement (PostgreSQL), each only where the
/// result stays at 0 or more: with orders spread over many products, one round trip instead of
/// one per product.
async fn change_stock_together(
    txn: &DatabaseTransaction,
    changes: &[(Uuid, i64)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    // The changes as two arrays, unnested into rows: one statement text whatever their number,
    // prepared once per connection (a `VALUES` list has one text per length).
    let (ids, deltas): (Vec<Uuid>, Vec<i64>) = changes.iter().copied().unzip();
    let values: Vec<sea_orm::Value> = vec![now.into(), ids.into(), deltas.into()];
    let sql = "UPDATE products AS p SET stock = p.stock + v.delta, updated_at = $1 \
               FROM unnest($2::uuid[], $3::bigint[]) AS v (id, delta) WHERE p.id = v.id AND p.stock + v.delta >= 0";
    let updated = txn
        .execute_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values))
        .await?;
    check_stock_changed(updated.rows_affected(), changes.len())
}

/// The rows are locked and the ledger checked every change: a stock update that matches fewer
/// rows is a bug, and the whole batch is refused rather than applied in part.
fn check_stock_changed(updated: u64, expected: usize) -> Result<(), DbErr> {
    if updated == expected as u64 {
        Ok(())
    } else {
        Err(DbErr::Custom(format!(
            "{updated} of {expected} stock updates applied; refusing the batch"
        )))
    }
}

/// Step 5: stock, reservations and released quantities.
async fn write_changes(txn: &DatabaseTransaction, ledger: &Ledger) -> Result<(), DbErr> {
    let now = now();
    let changes: Vec<(Uuid, i64)> = ledger.stock_changes().collect();
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        for chunk in changes.chunks(INSERT_CHUNK) {
            change_stock_together(txn, chunk, now).await?;
        }
    } else {
        for (product_id, delta) in changes {
            let stock = || Expr::col(product::Column::Stock);
            let updated = product::Entity::update_many()
                .col_expr(product::Column::Stock, stock().add(delta))
                .col_expr(product::Column::UpdatedAt, Expr::value(now))
                .filter(product::Column::Id.eq(product_id))
                .filter(stock().add(delta).gte(0))
                .exec(txn)
                .await?;
            check_stock_changed(updated.rows_affected, 1)?;
        }
    }

    let mut reservations = Vec::new();
    let mut lines = Vec::new();
    for (order_id, reservation) in ledger.new_reservations() {
        let (status, shortages) = match reservation {
            Reservation::Reserved(held) => {
                lines.extend(held.iter().map(|(product_id, line)| reservation_line::ActiveModel {
                    order_id: Set(order_id),
                    product_id: Set(*product_id),
                    quantity: Set(line.quantity),
                    released: Set(line.released),
                }));
                (reservation::RESERVED, None)
            }
            Reservation::Rejected(short) => (reservation::REJECTED, serde_json::to_string(short).ok()),
        };
        reservations.push(reservation::ActiveModel {
            order_id: Set(order_id),
            status: Set(status.to_owned()),
            shortages: Set(shortages),
            created_at: Set(now),
        });
    }
    insert_chunked(txn, reservations).await?;
    insert_chunked(txn, lines).await?;
    for (order_id, product_id, released) in ledger.released_lines() {
        reservation_line::Entity::update_many()
            .col_expr(reservation_line::Column::Released, Expr::value(released))
            .filter(reservation_line::Column::OrderId.eq(order_id))
            .filter(reservation_line::Column::ProductId.eq(product_id))
            .exec(txn)
            .await?;
    }
    Ok(())
}
