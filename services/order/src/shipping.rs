//! Shipment progression: paid orders ship `ship_after` after payment, shipped orders are
//! delivered `deliver_after` after shipping, each item recording its own `shipped_at` and
//! `delivered_at`. Safe with several replicas: each pass claims its due orders with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two replicas never move the same order and neither
//! waits for the other; on SQLite (one process) the write transaction serialises passes. The
//! updates also re-check the status, so an order cancelled meanwhile is never shipped.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait as _;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockBehavior, LockType},
};
use shop_platform::db::one_of;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    clock,
    context::Context,
    entity::{ItemStatus, OrderStatus, item, order},
    metrics::OrderEvent,
    store,
};

/// Orders moved per transaction.
const BATCH: u64 = 200;

/// What one pass moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Orders that shipped.
    pub shipped: u64,
    /// Orders that were delivered.
    pub delivered: u64,
}

/// One step of the progression: from which status, after how long, to which.
#[derive(Clone, Copy, Debug)]
struct Step {
    from: OrderStatus,
    since: order::Column,
    after: Duration,
    to: OrderStatus,
    stamp: order::Column,
    items_from: ItemStatus,
    items_to: ItemStatus,
    item_stamp: item::Column,
    /// What the move counts as (`shop.orders`).
    event: OrderEvent,
}

/// Moves paid and shipped orders along as their delays pass.
#[derive(Clone, Debug)]
pub struct ShipmentScheduler {
    ctx: Context,
}

impl ShipmentScheduler {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// One pass: ships every order due to ship, then delivers every order due for delivery, as
    /// of the clock's now.
    pub async fn tick(&self) -> anyhow::Result<Progress> {
        let config = &self.ctx.config;
        let shipped = self
            .advance(Step {
                from: OrderStatus::Paid,
                since: order::Column::PaidAt,
                after: config.ship_after,
                to: OrderStatus::Shipped,
                stamp: order::Column::ShippedAt,
                items_from: ItemStatus::Ordered,
                items_to: ItemStatus::Shipped,
                item_stamp: item::Column::ShippedAt,
                event: OrderEvent::Shipped,
            })
            .await
            .context("shipping paid orders")?;
        let delivered = self
            .advance(Step {
                from: OrderStatus::Shipped,
                since: order::Column::ShippedAt,
                after: config.deliver_after,
                to: OrderStatus::Delivered,
                stamp: order::Column::DeliveredAt,
                items_from: ItemStatus::Shipped,
                items_to: ItemStatus::Delivered,
                item_stamp: item::Column::DeliveredAt,
                event: OrderEvent::Delivered,
            })
            .await
            .context("delivering shipped orders")?;
        Ok(Progress { shipped, delivered })
    }

    /// Ticks every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            match self.tick().await {
                Ok(progress) if progress != Progress::default() => {
                    tracing::info!(
                        shipped = progress.shipped,
                        delivered = progress.delivered,
                        "shipments moved"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = format!("{error:#}"), "shipment pass failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn advance(&self, step: Step) -> anyhow::Result<u64> {
        let mut moved = 0;
        loop {
            let txn = store::begin_write(&self.ctx.db).await?;
            let now = self.ctx.clock.now();
            let due: Vec<Uuid> = order::Entity::find()
                .select_only()
                .column(order::Column::Id)
                .filter(order::Column::Status.eq(step.from))
                .filter(step.since.lte(clock::before(now, step.after)))
                .order_by_asc(step.since)
                .limit(BATCH)
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .into_tuple()
                .all(&txn)
                .await?;
            let count = due.len() as u64;
            if count > 0 {
                move_orders(&txn, &step, &due, now).await?;
            }
            txn.commit().await?;
            crate::metrics::count_many(step.event, count);
            moved += count;
            if count < BATCH {
                return Ok(moved);
            }
        }
    }
}

async fn move_orders(txn: &DatabaseTransaction, step: &Step, ids: &[Uuid], now: DateTime<Utc>) -> anyhow::Result<()> {
    order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(step.to))
        .col_expr(step.stamp, Expr::value(now))
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(one_of(
            txn.get_database_backend(),
            order::Column::Id,
            ids.iter().copied(),
        ))
        .filter(order::Column::Status.eq(step.from))
        .exec(txn)
        .await?;
    item::Entity::update_many()
        .col_expr(item::Column::Status, Expr::value(step.items_to))
        .col_expr(step.item_stamp, Expr::value(now))
        .filter(one_of(
            txn.get_database_backend(),
            item::Column::OrderId,
            ids.iter().copied(),
        ))
        .filter(item::Column::Status.eq(step.items_from))
        .exec(txn)
        .await?;
    Ok(())
}
