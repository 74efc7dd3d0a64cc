//! Reading orders with their items and payment, and the write transactions every state change
//! runs in. A state change first locks its order's row (`FOR UPDATE` on PostgreSQL; on SQLite
//! the transaction takes the database's write lock as it begins), then checks the order's
//! current state, so concurrent changes of one order apply one after the other.

use std::collections::HashMap;

use anyhow::Context as _;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use shop_platform::db::one_of;
use uuid::Uuid;

use crate::entity::{ItemStatus, item, order, payment};

/// An order as the API shows it: the row, its items in order, its payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    /// The order's row.
    pub order: order::Model,
    /// Its items, by position.
    pub items: Vec<item::Model>,
    /// Its payment.
    pub payment: payment::Model,
}

pub use shop_platform::db::begin_write;

/// The order `id` with its items and payment, locked until the transaction ends.
pub async fn lock(txn: &DatabaseTransaction, id: Uuid) -> anyhow::Result<Option<OrderRecord>> {
    let Some(order) = order::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await
        .context("locking the order")?
    else {
        return Ok(None);
    };
    Ok(Some(complete(txn, vec![order]).await?.remove(0)))
}

/// The rows of the orders `ids` that exist, locked until the transaction ends, by id. Locked
/// in id order in one statement, so two transactions locking overlapping sets queue up instead
/// of deadlocking. The rows alone: the steps every served order takes (its reservation's
/// result, its capture's record on PostgreSQL) need only the row (the total is the payment's
/// amount) and read the rest ([`complete`]) in the rare case that needs it; reading items
/// and payments again at each step was two of a served order's statements per step
/// (docs/benchmarks.md).
pub async fn lock_orders(txn: &DatabaseTransaction, ids: &[Uuid]) -> anyhow::Result<Vec<order::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    order::Entity::find()
        .filter(one_of(
            txn.get_database_backend(),
            order::Column::Id,
            ids.iter().copied(),
        ))
        .order_by_asc(order::Column::Id)
        .lock_exclusive()
        .all(txn)
        .await
        .context("locking the orders")
}

/// The order `id` with its items and payment.
pub async fn load<C: ConnectionTrait>(conn: &C, id: Uuid) -> anyhow::Result<Option<OrderRecord>> {
    let Some(order) = order::Entity::find_by_id(id)
        .one(conn)
        .await
        .context("reading the order")?
    else {
        return Ok(None);
    };
    Ok(Some(complete(conn, vec![order]).await?.remove(0)))
}

/// Adds the items and payments to `orders` (two queries whatever their number), keeping their
/// order. The rows are written in one transaction, so a missing payment is a bug.
pub async fn complete<C: ConnectionTrait>(conn: &C, orders: Vec<order::Model>) -> anyhow::Result<Vec<OrderRecord>> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = orders.iter().map(|order| order.id).collect();
    let mut items: HashMap<Uuid, Vec<item::Model>> = HashMap::new();
    for item in item::Entity::find()
        .filter(one_of(conn.get_database_backend(), item::Column::OrderId, ids.clone()))
        .order_by_asc(item::Column::OrderId)
        .order_by_asc(item::Column::Position)
        .all(conn)
        .await
        .context("reading order items")?
    {
        items.entry(item.order_id).or_default().push(item);
    }
    let mut payments: HashMap<Uuid, payment::Model> = payment::Entity::find()
        .filter(one_of(conn.get_database_backend(), payment::Column::OrderId, ids))
        .all(conn)
        .await
        .context("reading payments")?
        .into_iter()
        .map(|payment| (payment.order_id, payment))
        .collect();
    orders
        .into_iter()
        .map(|order| {
            let payment = payments
                .remove(&order.id)
                .with_context(|| format!("order {} has no payment row", order.id))?;
            Ok(OrderRecord {
                items: items.remove(&order.id).unwrap_or_default(),
                order,
                payment,
            })
        })
        .collect()
}

/// Marks every item of the order that has not shipped as never going to.
pub async fn cancel_unshipped_items(txn: &DatabaseTransaction, order_id: Uuid) -> Result<(), DbErr> {
    cancel_unshipped_items_of(txn, &[order_id]).await
}

/// [`cancel_unshipped_items`] for several orders, in one statement.
pub async fn cancel_unshipped_items_of(txn: &DatabaseTransaction, order_ids: &[Uuid]) -> Result<(), DbErr> {
    if order_ids.is_empty() {
        return Ok(());
    }
    item::Entity::update_many()
        .col_expr(item::Column::Status, Expr::value(ItemStatus::Cancelled))
        .filter(one_of(
            txn.get_database_backend(),
            item::Column::OrderId,
            order_ids.iter().copied(),
        ))
        .filter(item::Column::Status.eq(ItemStatus::Ordered))
        .exec(txn)
        .await?;
    Ok(())
}
