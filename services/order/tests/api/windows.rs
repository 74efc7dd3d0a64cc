//! Cancel and return: every boundary of their windows, measured from `placed_at` and from each
//! item's `delivered_at` (never from `updated_at`), and every state.

use std::time::Duration;

use shop_platform::grpc::identity::Role;
use shop_proto::pb::order::{Order, OrderItemStatus, OrderStatus, PaymentStatus};
use tonic::{Code, Status};

use crate::helpers::{Options, caller, code_of, spawn, spawn_with};

const TICK: Duration = Duration::from_micros(1);

fn refused(result: Result<Order, Status>, code: &str) {
    let status = result.expect_err("refused");
    assert_eq!(
        code_of(&status),
        (Code::FailedPrecondition, code.to_owned()),
        "{status:?}"
    );
}

#[tokio::test]
async fn the_cancel_window_runs_from_placing_to_its_last_microsecond() {
    // Placed with no relay: the orders wait, and are paid 20 hours later (updated_at moves).
    let mesh = spawn_with(Options {
        relay: false,
        env: &[("SHOP_SHIP_AFTER", "3d")],
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);
    let on_time = mesh.place(&customer, "on-time", &[(product, 2)]).await.unwrap();
    let late = mesh.place(&customer, "late", &[(product, 3)]).await.unwrap();

    mesh.clock.advance(Duration::from_secs(20 * 3600));
    let _relay = mesh.start_relay().await;
    mesh.wait_for(&customer, &on_time.id, OrderStatus::Paid).await;
    mesh.wait_for(&customer, &late.id, OrderStatus::Paid).await;
    mesh.expect_stock(product, 10, 5).await;

    // 24 hours after placing (only 4 after paying): the last moment to cancel.
    mesh.clock.advance(Duration::from_secs(4 * 3600));
    let cancelled = mesh.cancel(&customer, &on_time.id).await.unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(cancelled.status_reason.as_deref(), Some("cancelled_by_customer"));
    assert!(
        cancelled
            .items
            .iter()
            .all(|item| item.status() == OrderItemStatus::Cancelled)
    );
    let payment = cancelled.payment.clone().unwrap();
    assert_eq!(payment.status(), PaymentStatus::Refunded);
    assert_eq!(payment.refunded.unwrap().amount, 2_000);
    assert_eq!(mesh.payments.refunds(on_time.id.parse().unwrap()), vec![2_000]);
    mesh.expect_stock(product, 10, 7).await;

    // One microsecond later the window is closed, however recently the order changed.
    mesh.clock.advance(TICK);
    refused(mesh.cancel(&customer, &late.id).await, "not_cancellable");
    assert_eq!(mesh.get(&customer, &late.id).await.unwrap().status(), OrderStatus::Paid);

    // Cancelling a cancelled order returns it unchanged, even after the window.
    let again = mesh.cancel(&customer, &on_time.id).await.unwrap();
    assert_eq!(again, cancelled);
    assert_eq!(mesh.payments.refunds(on_time.id.parse().unwrap()), vec![2_000]);
    mesh.expect_stock(product, 10, 7).await;
}

#[tokio::test]
async fn only_pending_and_paid_orders_can_be_cancelled() {
    let mesh = spawn().await;
    let product = mesh.product(1_000, 10).await;
    let scarce = mesh.product(1_000, 0).await;
    let trigger = mesh.product(402, 10).await;
    let customer = caller(Role::Customer);

    let rejected = mesh.place(&customer, "rejected", &[(scarce, 1)]).await.unwrap();
    mesh.wait_for(&customer, &rejected.id, OrderStatus::Rejected).await;
    refused(mesh.cancel(&customer, &rejected.id).await, "not_cancellable");

    let failed = mesh.place(&customer, "failed", &[(trigger, 1)]).await.unwrap();
    mesh.wait_for(&customer, &failed.id, OrderStatus::PaymentFailed).await;
    refused(mesh.cancel(&customer, &failed.id).await, "not_cancellable");

    let shipped = mesh.place(&customer, "shipped", &[(product, 1)]).await.unwrap();
    let delivered = mesh.place(&customer, "delivered", &[(product, 1)]).await.unwrap();
    mesh.wait_for(&customer, &shipped.id, OrderStatus::Paid).await;
    mesh.wait_for(&customer, &delivered.id, OrderStatus::Paid).await;
    mesh.clock.advance(mesh.config.ship_after);
    assert_eq!(mesh.tick().await.shipped, 2);
    refused(mesh.cancel(&customer, &shipped.id).await, "not_cancellable");
    mesh.clock.advance(mesh.config.deliver_after);
    assert_eq!(mesh.tick().await.delivered, 2);
    refused(mesh.cancel(&customer, &delivered.id).await, "not_cancellable");
    mesh.expect_stock(product, 10, 8).await;

    // Another user's order does not exist for them; an admin may cancel it.
    let paid = mesh.place(&customer, "paid", &[(product, 1)]).await.unwrap();
    mesh.wait_for(&customer, &paid.id, OrderStatus::Paid).await;
    let stranger = caller(Role::Customer);
    let status = mesh.cancel(&stranger, &paid.id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let admin = caller(Role::Admin);
    let by_admin = mesh.cancel(&admin, &paid.id).await.unwrap();
    assert_eq!(by_admin.status_reason.as_deref(), Some("cancelled_by_admin"));
    mesh.expect_stock(product, 10, 8).await;
}

#[tokio::test]
async fn the_return_window_runs_from_each_items_delivery_to_its_last_microsecond() {
    let mesh = spawn().await;
    let a = mesh.product(1_000, 5).await;
    let b = mesh.product(2_000, 5).await;
    let c = mesh.product(3_000, 5).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "three", &[(a, 1), (b, 2), (c, 1)]).await.unwrap();
    let item = |product: uuid::Uuid| {
        placed
            .items
            .iter()
            .find(|item| item.product_id == product.to_string())
            .unwrap()
            .id
            .clone()
    };

    // Not returnable before delivery: paid, then shipped.
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    refused(
        mesh.return_item(&customer, &placed.id, &item(a)).await,
        "not_returnable",
    );
    mesh.clock.advance(mesh.config.ship_after);
    mesh.tick().await;
    refused(
        mesh.return_item(&customer, &placed.id, &item(a)).await,
        "not_returnable",
    );
    mesh.clock.advance(mesh.config.deliver_after);
    mesh.tick().await;

    // 20 hours after delivery: a returns (and the order's updated_at moves).
    mesh.clock.advance(Duration::from_secs(20 * 3600));
    let after_a = mesh.return_item(&customer, &placed.id, &item(a)).await.unwrap();
    assert_eq!(
        after_a.payment.as_ref().unwrap().refunded.as_ref().unwrap().amount,
        1_000
    );
    // Exactly one day after delivery: b still returns.
    mesh.clock.advance(Duration::from_secs(4 * 3600));
    let after_b = mesh.return_item(&customer, &placed.id, &item(b)).await.unwrap();
    let payment = after_b.payment.clone().unwrap();
    assert_eq!(payment.status(), PaymentStatus::PartiallyRefunded);
    assert_eq!(payment.refunded.unwrap().amount, 5_000);
    // One microsecond later c does not.
    mesh.clock.advance(TICK);
    refused(
        mesh.return_item(&customer, &placed.id, &item(c)).await,
        "not_returnable",
    );

    // Returning a returned item changes nothing.
    let again = mesh.return_item(&customer, &placed.id, &item(a)).await.unwrap();
    assert_eq!(again, after_b);
    assert_eq!(again.status(), OrderStatus::Delivered);
    mesh.expect_stock(a, 5, 5).await;
    mesh.expect_stock(b, 5, 5).await;
    mesh.expect_stock(c, 5, 4).await;

    // Unknown items, and other users, see nothing.
    let unknown = mesh
        .return_item(&customer, &placed.id, &uuid::Uuid::now_v7().to_string())
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    let stranger = caller(Role::Customer);
    let foreign = mesh.return_item(&stranger, &placed.id, &item(c)).await;
    assert_eq!(foreign.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn items_of_a_cancelled_order_cannot_be_returned() {
    let mesh = spawn().await;
    let product = mesh.product(1_000, 5).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "cancel-me", &[(product, 1)]).await.unwrap();
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    mesh.cancel(&customer, &placed.id).await.unwrap();
    let item = &placed.items[0].id;
    refused(mesh.return_item(&customer, &placed.id, item).await, "not_returnable");
    mesh.expect_stock(product, 5, 5).await;
}
