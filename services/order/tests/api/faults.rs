//! Nothing waits forever and no money moves twice: lost and unanswered reservations (the
//! reconciler), a payment provider that hangs, and a refund whose caller hung up.

use std::time::Duration;

use prost::Message as _;
use sea_orm::{ConnectionTrait, EntityTrait};
use shop_order::entity::order;
use shop_platform::{
    grpc::identity::Role,
    outbox,
    queue::{self, Message},
    testing,
};
use shop_proto::{
    message_type,
    pb::{
        events::{ReserveStock, StockLine},
        order::{OrderStatus, PaymentStatus},
    },
};
use uuid::Uuid;

use crate::helpers::{Options, PATIENCE, caller, spawn_with};

/// The mesh with the first order service's relay stopped, so that a test can lose messages.
async fn without_relay() -> crate::helpers::TestMesh {
    spawn_with(Options {
        relay: false,
        ..Options::default()
    })
    .await
}

/// Deletes every unpublished outbox row of the order service: messages lost before they left.
async fn lose_unsent_messages(mesh: &crate::helpers::TestMesh) -> Vec<outbox::entity::Model> {
    let rows = outbox::entity::Entity::find().all(mesh.db()).await.unwrap();
    outbox::entity::Entity::delete_many().exec(mesh.db()).await.unwrap();
    rows
}

#[tokio::test]
async fn a_lost_reservation_is_asked_for_again_and_the_order_is_paid() {
    let mesh = without_relay().await;
    let lamp = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "lost", &[(lamp, 2)]).await.unwrap();
    assert_eq!(lose_unsent_messages(&mesh).await.len(), 1, "the ReserveStock was lost");
    let _relay = mesh.start_relay().await;

    // Not yet: the catalog may just be slow.
    mesh.clock
        .advance(mesh.config.reconcile.retry_after - Duration::from_secs(1));
    assert_eq!(mesh.reconcile().await.asked_again, 0);
    mesh.clock.advance(Duration::from_secs(1));
    assert_eq!(mesh.reconcile().await.asked_again, 1);
    assert_eq!(mesh.reconcile().await.asked_again, 0, "asked once per period");

    let paid = mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    assert_eq!(paid.payment.unwrap().status(), PaymentStatus::Captured);
    mesh.expect_stock(lamp, 10, 8).await;
    assert_eq!(mesh.payments.captures(placed.id.parse().unwrap()), 1);
}

#[tokio::test]
async fn an_answer_that_never_comes_rejects_the_order_and_a_late_reservation_takes_nothing() {
    let metrics = testing::metrics::Scraper::install();
    let mesh = without_relay().await;
    let lamp = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "unanswered", &[(lamp, 3)]).await.unwrap();
    let order_id: Uuid = placed.id.parse().unwrap();
    let lost = lose_unsent_messages(&mesh).await;
    assert_eq!(lost[0].kind, message_type::<ReserveStock>());

    mesh.clock.advance(mesh.config.reconcile.give_up_after);
    let done = mesh.reconcile().await;
    assert_eq!(done.timed_out, 1);
    let rejected = mesh.get(&customer, &placed.id).await.unwrap();
    assert_eq!(rejected.status(), OrderStatus::Rejected);
    assert_eq!(rejected.status_reason.as_deref(), Some("reservation_timeout"));
    assert_eq!(rejected.payment.unwrap().status(), PaymentStatus::Voided);
    let counted = ["shop_order_event=\"rejected\""];
    assert_eq!(metrics.value("shop_orders_total", &counted).await, Some(1.0));
    // Rejected after waiting out the whole reconcile window (on the service's clock).
    let waited = ["shop_order_outcome=\"rejected\""];
    let total = metrics
        .value("shop_order_reservation_duration_seconds_sum", &waited)
        .await
        .unwrap();
    assert!(total >= mesh.config.reconcile.give_up_after.as_secs_f64(), "{total} s");

    // The release leaves, reaches the catalog before any reservation, and closes the order there.
    let _relay = mesh.start_relay().await;
    mesh.wait_until_released(&placed.id, 1).await;
    // Now the lost ReserveStock turns up after all (redriven from somewhere, say).
    let late = Message {
        id: Uuid::now_v7().to_string(),
        kind: message_type::<ReserveStock>(),
        payload: ReserveStock {
            order_id: order_id.to_string(),
            lines: vec![StockLine {
                product_id: lamp.to_string(),
                quantity: 3,
            }],
        }
        .encode_to_vec(),
        headers: Default::default(),
    };
    let broker = queue::from_url(&testing::amqp_url()).await.unwrap();
    broker
        .publish(&mesh.config.queues.reserve, vec![late.clone()])
        .await
        .unwrap();
    wait_for_catalog_inbox(&mesh, &late.id).await;
    mesh.expect_stock(lamp, 10, 10).await;
    let still = mesh.get(&customer, &placed.id).await.unwrap();
    assert_eq!(still.status(), OrderStatus::Rejected, "a late answer changes nothing");
    assert_eq!(mesh.payments.captures(order_id), 0, "no money was taken");
}

#[tokio::test]
async fn a_hanging_payment_provider_holds_no_lock_and_the_money_settles_when_it_answers() {
    let mesh = spawn_with(Options {
        env: &[("SHOP_PAYMENT_TIMEOUT", "300ms")],
        ..Options::default()
    })
    .await;
    let lamp = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);
    mesh.payments.hang(true);
    let placed = mesh.place(&customer, "hung", &[(lamp, 2)]).await.unwrap();
    let order_id: Uuid = placed.id.parse().unwrap();
    // The stock is reserved; the capture hangs, and the order waits for it.
    mesh.expect_stock(lamp, 10, 8).await;
    wait_until(|| async {
        let row = order::Entity::find_by_id(order_id)
            .one(mesh.db())
            .await
            .unwrap()
            .unwrap();
        row.stock_reserved_at.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mesh.get(&customer, &placed.id).await.unwrap().status(),
        OrderStatus::Pending
    );

    // Nothing holds the order: the customer can cancel at once, and the stock goes back.
    let cancelled = tokio::time::timeout(Duration::from_secs(2), mesh.cancel(&customer, &placed.id))
        .await
        .expect("cancelling does not wait for the provider")
        .unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    mesh.expect_stock(lamp, 10, 10).await;

    // The provider comes back: the capture lands, and is refunded, once.
    mesh.payments.hang(false);
    let refunded = wait_for_refund(&mesh, &customer, &placed.id, 2_000).await;
    assert_eq!(refunded.status(), OrderStatus::Cancelled);
    assert_eq!(mesh.payments.captures(order_id), 1);
    assert_eq!(mesh.payments.refunds(order_id), [2_000]);
}

#[tokio::test]
async fn a_refund_whose_caller_hung_up_is_still_paid_once() {
    let mesh = spawn_with(Options {
        env: &[("SHOP_PAYMENT_TIMEOUT", "1s")],
        ..Options::default()
    })
    .await;
    let lamp = mesh.product(1_500, 10).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "paid", &[(lamp, 2)]).await.unwrap();
    let order_id: Uuid = placed.id.parse().unwrap();
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;

    mesh.payments.hang(true);
    let request = shop_proto::pb::order::CancelOrderRequest { id: placed.id.clone() };
    let signed = crate::helpers::signed(request, &customer);
    let mut client = mesh.client();
    let call = tokio::spawn(async move { client.cancel_order(signed).await });
    // The caller hangs up while the provider is being asked for the refund.
    mesh.payments.wait_until_asked().await;
    call.abort();
    assert!(
        call.await.is_err_and(|error| error.is_cancelled()),
        "the call was still running"
    );

    // The cancellation committed before the provider was asked.
    wait_until(|| async {
        let row = order::Entity::find_by_id(order_id)
            .one(mesh.db())
            .await
            .unwrap()
            .unwrap();
        row.status == shop_order::entity::OrderStatus::Cancelled
    })
    .await;
    let pending_refund = mesh.get(&customer, &placed.id).await.unwrap();
    assert_eq!(pending_refund.payment.unwrap().refunded.unwrap().amount, 0);

    mesh.payments.hang(false);
    let refunded = wait_for_refund(&mesh, &customer, &placed.id, 3_000).await;
    assert_eq!(refunded.payment.unwrap().status(), PaymentStatus::Refunded);
    assert_eq!(mesh.payments.refunds(order_id), [3_000], "refunded once");
    mesh.expect_stock(lamp, 10, 10).await;
}

async fn wait_for_refund(
    mesh: &crate::helpers::TestMesh,
    customer: &shop_platform::grpc::identity::Caller,
    id: &str,
    amount: i64,
) -> shop_proto::pb::order::Order {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let order = mesh.get(customer, id).await.unwrap();
        if order
            .payment
            .as_ref()
            .and_then(|p| p.refunded.as_ref())
            .map(|m| m.amount)
            == Some(amount)
        {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {id} not refunded: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for_catalog_inbox(mesh: &crate::helpers::TestMesh, message_id: &str) {
    let query = sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT count(*) AS n FROM inbox WHERE message_id = $1",
        [message_id.into()],
    );
    let db = &mesh.catalog.db;
    wait_until(|| {
        let query = query.clone();
        async move {
            let row = db.query_one_raw(query).await.unwrap().unwrap();
            row.try_get::<i64>("", "n").unwrap() == 1
        }
    })
    .await;
}
