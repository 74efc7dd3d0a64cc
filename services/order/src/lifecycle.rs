//! What a customer (or an admin) does to a placed order: cancel it before it ships, within the
//! cancel window from `placed_at`; return one delivered item within the return window from
//! that item's `delivered_at`. Both windows are measured from timestamps written once, never
//! from `updated_at`. Each change runs in one transaction with the order's row locked: the
//! refund is requested and the ReleaseStock written to the outbox together with the new state;
//! the provider is asked for the refund after the commit (see `settlement`).

use anyhow::Context as _;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, IntoActiveModel};
use shop_platform::grpc::convert::parse_uuid;
use shop_platform::grpc::{error::ServiceError, identity::Caller};
use uuid::Uuid;

use crate::{
    access::{may_see, not_found},
    clock,
    context::Context,
    entity::{ItemStatus, OrderStatus, PaymentStatus},
    settlement,
    stock::{self, ReleaseReason},
    store::{self, OrderRecord},
};

/// Cancels the order `id` for `caller`.
pub async fn cancel(ctx: &Context, caller: &Caller, id: &str) -> Result<OrderRecord, ServiceError> {
    let order_id = parse_uuid(id, "order_id")?;
    let txn = store::begin_write(&ctx.db).await?;
    let record = visible_locked(&txn, caller, order_id).await?;
    let now = ctx.clock.now();
    let refuse = |message: String| ServiceError::FailedPrecondition {
        code: "not_cancellable",
        message,
    };
    match record.order.status {
        OrderStatus::Cancelled => {
            txn.rollback().await?;
            return Ok(record);
        }
        OrderStatus::Pending | OrderStatus::Paid => {}
        OrderStatus::Shipped | OrderStatus::Delivered => {
            return Err(refuse("the order has shipped".into()));
        }
        OrderStatus::Rejected | OrderStatus::PaymentFailed => {
            return Err(refuse("the order has already ended".into()));
        }
    }
    if record.items.iter().any(|item| item.shipped_at.is_some()) {
        return Err(refuse("an item has shipped".into()));
    }
    let closes = clock::after(record.order.placed_at, ctx.config.cancel_window);
    if now > closes {
        return Err(refuse(format!("the cancel window closed at {}", closes.to_rfc3339())));
    }

    let reason = if caller.user_id == record.order.user_id {
        "cancelled_by_customer"
    } else {
        "cancelled_by_admin"
    };
    let mut order = record.order.clone().into_active_model();
    order.status = Set(OrderStatus::Cancelled);
    order.status_reason = Set(Some(reason.into()));
    order.updated_at = Set(now);
    order.update(&txn).await?;
    store::cancel_unshipped_items(&txn, order_id).await?;
    let refund = match record.payment.status {
        PaymentStatus::Captured => {
            let amount = record.payment.amount - record.payment.refunded;
            Some(settlement::request_refund(&txn, &record.payment, None, amount).await?)
        }
        // The capture is under way: the payment worker refunds it when it lands.
        PaymentStatus::Pending if record.order.stock_reserved_at.is_some() => None,
        _ => {
            let mut payment = record.payment.clone().into_active_model();
            payment.status = Set(PaymentStatus::Voided);
            payment.updated_at = Set(now);
            payment.update(&txn).await?;
            None
        }
    };
    // Released now, also for a PENDING order whose reservation is still on its way: the
    // catalog gives back what it reserved, or refuses a reservation that arrives after this.
    let released = stock::release_order(&txn, &ctx.config.queues, &record, ReleaseReason::Cancelled, now).await?;
    txn.commit().await?;
    if released {
        ctx.relay.wake();
    }
    tracing::info!(%order_id, reason, "order cancelled");
    crate::metrics::count(crate::metrics::OrderEvent::Cancelled);
    settle_now(ctx, refund).await;
    reload(ctx, order_id).await
}

/// Returns the item `item_id` of the order `order_id` for `caller`.
pub async fn return_item(
    ctx: &Context,
    caller: &Caller,
    order_id: &str,
    item_id: &str,
) -> Result<OrderRecord, ServiceError> {
    let order_id = parse_uuid(order_id, "order_id")?;
    let item_id = parse_uuid(item_id, "item_id")?;
    let txn = store::begin_write(&ctx.db).await?;
    let record = visible_locked(&txn, caller, order_id).await?;
    let Some(item) = record.items.iter().find(|item| item.id == item_id).cloned() else {
        return Err(ServiceError::not_found("no such item in the order"));
    };
    let now = ctx.clock.now();
    let refuse = |message: String| ServiceError::FailedPrecondition {
        code: "not_returnable",
        message,
    };
    match item.status {
        ItemStatus::Returned => {
            txn.rollback().await?;
            return Ok(record);
        }
        ItemStatus::Delivered => {}
        ItemStatus::Ordered | ItemStatus::Shipped | ItemStatus::Cancelled => {
            return Err(refuse("the item has not been delivered".into()));
        }
    }
    let delivered_at = item.delivered_at.context("a delivered item without delivered_at")?;
    let closes = clock::after(delivered_at, ctx.config.return_window);
    if now > closes {
        return Err(refuse(format!("the return window closed at {}", closes.to_rfc3339())));
    }

    let amount = item.line_total();
    let mut returned = item.clone().into_active_model();
    returned.status = Set(ItemStatus::Returned);
    returned.returned_at = Set(Some(now));
    returned.update(&txn).await?;
    let mut order = record.order.clone().into_active_model();
    order.updated_at = Set(now);
    order.update(&txn).await?;
    let refund = settlement::request_refund(&txn, &record.payment, Some(item_id), amount).await?;
    stock::release(
        &txn,
        &ctx.config.queues,
        order_id,
        item_id,
        ReleaseReason::Returned,
        &[item],
        now,
    )
    .await?;
    txn.commit().await?;
    ctx.relay.wake();
    tracing::info!(%order_id, %item_id, amount, "item returned");
    crate::metrics::count(crate::metrics::OrderEvent::Returned);
    settle_now(ctx, Some(refund)).await;
    reload(ctx, order_id).await
}

/// Carries out a refund the change just committed, so that the answer usually shows it done. If
/// the provider fails or is slow, the order is already in its new state and the payment worker
/// finishes the refund later: the caller's answer never waits on more than one provider timeout.
async fn settle_now(ctx: &Context, refund: Option<Uuid>) {
    let Some(task) = refund else {
        return;
    };
    // On a task of its own: a caller that hangs up (dropping this future) does not cut the
    // attempt short between the provider's answer and its record.
    let attempt = tokio::spawn({
        let ctx = ctx.clone();
        async move { settlement::attempt(&ctx, task).await }
    });
    match attempt.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(task_id = %task, error = format!("{error:#}"), "refund not recorded yet; the payment worker retries it");
        }
        Err(error) => tracing::error!(task_id = %task, %error, "the refund attempt panicked"),
    }
    settlement::wake(ctx);
}

/// The order, locked, if `caller` may see it; NOT_FOUND otherwise (another user's order looks
/// like no order at all).
async fn visible_locked(
    txn: &DatabaseTransaction,
    caller: &Caller,
    order_id: Uuid,
) -> Result<OrderRecord, ServiceError> {
    store::lock(txn, order_id)
        .await?
        .filter(|record| may_see(caller, record))
        .ok_or_else(not_found)
}

async fn reload(ctx: &Context, order_id: Uuid) -> Result<OrderRecord, ServiceError> {
    Ok(store::load(&ctx.db, order_id)
        .await?
        .context("an order vanished after a change")?)
}
