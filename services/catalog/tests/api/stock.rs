//! The reservation worker on real RabbitMQ and PostgreSQL: concurrency on one hot product,
//! duplicates, all-or-nothing orders and releases. Every test ends by checking the invariant
//! initial stock = stock + reserved and not released.

use std::{collections::HashSet, time::Duration};

use prost::Message as _;
use shop_catalog::entity::reservation;
use shop_platform::queue::bundle;
use shop_proto::{
    message_type,
    pb::events::{StockRejected, StockReserved, StockShortage},
};
use uuid::Uuid;

use crate::helpers::{Broker, release_message, reserve_message, spawn_app_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_reservations_take_exactly_the_stock() {
    let app = spawn_app_on(Broker::Rabbit, &[("SHOP_CATALOG_STOCK_BATCH", "100")]).await;
    // A second replica with its own connections, next to the service's own consumers.
    let replica = app.spawn_worker(None).await;
    let product = app.product(500).await;

    // 2,000 orders of one unit each, from 8 concurrent publishers.
    let publishers: Vec<_> = (0..8)
        .map(|_| {
            let queue = app.queue.clone();
            let name = app.config.queues.reserve.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let batch = (0..50)
                        .map(|_| reserve_message(Uuid::now_v7(), &[(product, 1)]))
                        .collect();
                    queue.publish(&name, batch).await.unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    app.wait_for_reservations(2_000, Duration::from_secs(60)).await;

    assert_eq!(app.reservations(Some(reservation::RESERVED)).await, 500);
    assert_eq!(app.reservations(Some(reservation::REJECTED)).await, 1_500);
    assert_eq!(app.stock(product).await, 0);
    app.assert_invariant(&[(product, 500)]).await;
    let answers = app.answers().await;
    assert_eq!(answers.get(&message_type::<StockReserved>()).map(Vec::len), Some(500));
    assert_eq!(answers.get(&message_type::<StockRejected>()).map(Vec::len), Some(1_500));

    // Never below zero, whatever a statement computes: the table refuses it.
    use sea_orm::ConnectionTrait as _;
    let below = app
        .db
        .execute_unprepared(&format!("UPDATE products SET stock = stock - 1 WHERE id = '{product}'"))
        .await;
    assert!(below.is_err(), "the CHECK constraint refuses a negative stock");

    // Every answer reaches the results queue.
    app.wait_for_outbox_drained(Duration::from_secs(30)).await;
    let mut results = app.queue.consume(&app.config.queues.results, 500).await.unwrap();
    let mut received = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while received < 2_000 {
            let batch = results.next_batch(500, Duration::from_millis(50)).await.unwrap();
            for delivery in batch {
                received += bundle::unbundle(delivery.message.clone()).unwrap().len();
                delivery.ack().await.unwrap();
            }
        }
    })
    .await
    .expect("2,000 answers on the results queue");
    replica.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_reservation_is_applied_once() {
    let app = spawn_app_on(Broker::Rabbit, &[]).await;
    let product = app.product(10).await;
    let order = Uuid::now_v7();
    let first = reserve_message(order, &[(product, 3)]);
    // The same message twice (a republished outbox row), then the same order under a new id.
    let again = reserve_message(order, &[(product, 3)]);
    app.publish_reserve(vec![first.clone(), first]).await;
    app.publish_reserve(vec![again]).await;
    let other = Uuid::now_v7();
    app.publish_reserve(vec![reserve_message(other, &[(product, 1)])]).await;

    app.wait_for_reservations(2, Duration::from_secs(20)).await;
    app.wait_for_inbox(3, Duration::from_secs(20)).await;
    assert_eq!(app.stock(product).await, 6, "3 + 1 taken, the repeats changed nothing");
    app.assert_invariant(&[(product, 10)]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_release_restores_once_and_never_more_than_held() {
    let app = spawn_app_on(Broker::Rabbit, &[]).await;
    let product = app.product(10).await;
    let order = Uuid::now_v7();
    app.reserve(order, &[(product, 3)]).await;
    app.wait_for_reservations(1, Duration::from_secs(20)).await;
    assert_eq!(app.stock(product).await, 7);

    // One returned item, delivered twice, and once more under another message id.
    let item = Uuid::now_v7();
    let returned = release_message(order, item, &[(product, 1)]);
    app.publish_release(vec![returned.clone(), returned]).await;
    app.publish_release(vec![release_message(order, item, &[(product, 1)])])
        .await;
    app.wait_for_releases(1, Duration::from_secs(20)).await;
    app.wait_for_inbox(3, Duration::from_secs(20)).await;
    assert_eq!(app.stock(product).await, 8, "restored once");
    app.assert_invariant(&[(product, 10)]).await;

    // Cancelling the whole order gives back only the 2 units still held, once.
    let cancel = release_message(order, order, &[(product, 3)]);
    app.publish_release(vec![cancel.clone(), cancel]).await;
    app.wait_for_releases(2, Duration::from_secs(20)).await;
    app.wait_for_inbox(4, Duration::from_secs(20)).await;
    assert_eq!(app.stock(product).await, 10);
    app.assert_invariant(&[(product, 10)]).await;

    // A release for an order that never reserved changes nothing.
    app.publish_release(vec![release_message(Uuid::now_v7(), Uuid::now_v7(), &[(product, 5)])])
        .await;
    app.wait_for_releases(3, Duration::from_secs(20)).await;
    assert_eq!(app.stock(product).await, 10);
    app.assert_invariant(&[(product, 10)]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_with_one_short_line_is_rejected_whole() {
    let app = spawn_app_on(Broker::Rabbit, &[]).await;
    let (plenty, scarce) = (app.product(10).await, app.product(1).await);
    let order = Uuid::now_v7();
    app.reserve(order, &[(plenty, 2), (scarce, 2)]).await;
    app.wait_for_reservations(1, Duration::from_secs(20)).await;

    assert_eq!(app.reservations(Some(reservation::REJECTED)).await, 1);
    assert_eq!(app.stock(plenty).await, 10, "no line decremented");
    assert_eq!(app.stock(scarce).await, 1);
    let answers = app.answers().await;
    let rejected = StockRejected::decode(answers[&message_type::<StockRejected>()][0].as_slice()).unwrap();
    assert_eq!(rejected.order_id, order.to_string());
    assert_eq!(
        rejected.short,
        [StockShortage {
            product_id: scarce.to_string(),
            requested: 2,
            available: 1,
        }]
    );
    app.assert_invariant(&[(plenty, 10), (scarce, 1)]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_the_worker_keeps_going() {
    let app = spawn_app_on(Broker::Rabbit, &[]).await;
    let product = app.product(5).await;
    let mut garbage = reserve_message(Uuid::now_v7(), &[(product, 1)]);
    garbage.payload = vec![0xff, 0xfe, 0xfd];
    let mut wrong_type = reserve_message(Uuid::now_v7(), &[(product, 1)]);
    wrong_type.kind = "shop.events.v1.Mystery".into();
    let zero = reserve_message(Uuid::now_v7(), &[(product, 0)]);
    let poison: HashSet<String> = [&garbage, &wrong_type, &zero].iter().map(|m| m.id.clone()).collect();
    app.publish_reserve(vec![garbage, wrong_type, zero]).await;
    let good = Uuid::now_v7();
    app.reserve(good, &[(product, 2)]).await;

    app.wait_for_reservations(1, Duration::from_secs(20)).await;
    assert_eq!(app.stock(product).await, 3);
    let dead_queue = format!("{}.dead", app.config.queues.reserve);
    let mut dead = app.queue.consume(&dead_queue, 10).await.unwrap();
    let mut seen = HashSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < 3 {
            let delivery = dead.next().await.unwrap();
            seen.insert(delivery.message.id.clone());
            delivery.ack().await.unwrap();
        }
    })
    .await
    .expect("the three poison messages reach the dead-letter queue");
    assert_eq!(seen, poison);
    app.assert_invariant(&[(product, 5)]).await;
    app.stop().await;
}
