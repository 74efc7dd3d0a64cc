//! The reservation worker under failures: a replica killed mid-batch, a broker connection cut
//! while a batch commits, and a clean shutdown with a batch in flight. A test holds a product's
//! row lock to stop a worker mid-transaction at a known point.

use std::time::Duration;

use shop_platform::testing::{self, proxy::FaultProxy};
use shop_proto::{message_type, pb::events::StockReserved};
use uuid::Uuid;

use crate::helpers::{reserve_message, spawn_app_without_workers, wait_for_blocked_worker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_is_redelivered_and_applied_once() {
    let app = spawn_app_without_workers().await;
    let product = app.product(10).await;
    let doomed = app.spawn_worker(None).await;
    let blocker = app.lock_product(product).await;
    let orders: Vec<_> = (0..5)
        .map(|_| reserve_message(Uuid::now_v7(), &[(product, 1)]))
        .collect();
    app.publish_reserve(orders).await;
    wait_for_blocked_worker(&app.db).await;

    // The process dies: its transaction never commits, its deliveries were never acked.
    doomed.task.abort();
    assert!(doomed.task.await.is_err_and(|error| error.is_cancelled()));
    blocker.rollback().await.unwrap();
    assert_eq!(app.reservations(None).await, 0);

    let survivor = app.spawn_worker(None).await;
    app.wait_for_reservations(5, Duration::from_secs(30)).await;
    app.wait_for_inbox(5, Duration::from_secs(10)).await;
    assert_eq!(app.stock(product).await, 5, "each order applied exactly once");
    app.assert_invariant(&[(product, 10)]).await;
    survivor.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_connection_cut_mid_batch_applies_each_order_once() {
    let app = spawn_app_without_workers().await;
    let product = app.product(10).await;
    let (proxy, via_proxy) = FaultProxy::in_front_of(&testing::amqp_url(), 5672).await;
    let flaky = app.spawn_worker(Some(via_proxy.as_str())).await;

    let blocker = app.lock_product(product).await;
    let orders: Vec<_> = (0..5)
        .map(|_| reserve_message(Uuid::now_v7(), &[(product, 1)]))
        .collect();
    app.publish_reserve(orders).await;
    wait_for_blocked_worker(&app.db).await;

    // The connection drops while the batch waits: the broker hands its deliveries to the other
    // replica, while the first one's transaction still commits and its acks go nowhere.
    let steady = app.spawn_worker(None).await;
    proxy.sever_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.rollback().await.unwrap();

    app.wait_for_reservations(5, Duration::from_secs(30)).await;
    app.wait_for_inbox(5, Duration::from_secs(10)).await;
    assert_eq!(app.stock(product).await, 5, "each order applied exactly once");
    assert_eq!(
        app.answers().await.get(&message_type::<StockReserved>()).map(Vec::len),
        Some(5),
        "and answered once"
    );
    app.assert_invariant(&[(product, 10)]).await;
    flaky.stop().await;
    steady.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_batch_in_flight() {
    let app = spawn_app_without_workers().await;
    let product = app.product(10).await;
    let worker = app.spawn_worker(None).await;
    let blocker = app.lock_product(product).await;
    let orders: Vec<_> = (0..3)
        .map(|_| reserve_message(Uuid::now_v7(), &[(product, 1)]))
        .collect();
    app.publish_reserve(orders).await;
    wait_for_blocked_worker(&app.db).await;

    worker.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!worker.task.is_finished(), "the worker waits for its batch");
    blocker.rollback().await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), worker.task)
        .await
        .expect("the worker stops once its batch is done")
        .unwrap()
        .unwrap();
    let applied = app.reservations(None).await;
    assert!(applied >= 1, "the batch in flight was committed, not abandoned");
    assert_eq!(app.stock(product).await, 10 - applied as i64);

    // Whatever it had not started is still queued for the next replica.
    let next = app.spawn_worker(None).await;
    app.wait_for_reservations(3, Duration::from_secs(30)).await;
    assert_eq!(app.stock(product).await, 7);
    app.assert_invariant(&[(product, 10)]).await;
    next.stop().await;
    app.stop().await;
}
