//! The one-process run's defaults: the order and catalog services on SQLite files and the
//! in-process queue, through the whole order path.

use shop_platform::grpc::identity::Role;
use shop_proto::pb::order::{OrderItemStatus, OrderStatus, PaymentStatus};

use crate::helpers::{Options, caller, spawn_with};

#[tokio::test]
async fn the_order_path_runs_on_sqlite_and_the_in_process_queue() {
    let mesh = spawn_with(Options {
        embedded: true,
        ..Options::default()
    })
    .await;
    let lamp = mesh.product(12_900, 3).await;
    let trigger = mesh.product(402, 1).await;
    let customer = caller(Role::Customer);

    let kept = mesh.place(&customer, "kept", &[(lamp, 1)]).await.unwrap();
    let cancelled = mesh.place(&customer, "cancelled", &[(lamp, 1)]).await.unwrap();
    // More than there ever was: rejected at placement (the catalog's answer shows 3).
    let rejected = mesh.place(&customer, "rejected", &[(lamp, 4)]).await.unwrap();
    let declined = mesh.place(&customer, "declined", &[(trigger, 1)]).await.unwrap();
    mesh.wait_for(&customer, &kept.id, OrderStatus::Paid).await;
    mesh.wait_for(&customer, &cancelled.id, OrderStatus::Paid).await;
    mesh.wait_for(&customer, &rejected.id, OrderStatus::Rejected).await;
    mesh.wait_for(&customer, &declined.id, OrderStatus::PaymentFailed).await;
    mesh.expect_stock(lamp, 3, 1).await;
    mesh.expect_stock(trigger, 1, 1).await;

    let after = mesh.cancel(&customer, &cancelled.id).await.unwrap();
    assert_eq!(after.payment.unwrap().status(), PaymentStatus::Refunded);
    mesh.expect_stock(lamp, 3, 2).await;

    mesh.clock.advance(mesh.config.ship_after);
    assert_eq!(mesh.tick().await.shipped, 1);
    mesh.clock.advance(mesh.config.deliver_after);
    assert_eq!(mesh.tick().await.delivered, 1);
    let returned = mesh.return_item(&customer, &kept.id, &kept.items[0].id).await.unwrap();
    assert_eq!(returned.items[0].status(), OrderItemStatus::Returned);
    assert_eq!(returned.payment.unwrap().refunded.unwrap().amount, 12_900);
    mesh.expect_stock(lamp, 3, 3).await;
}
