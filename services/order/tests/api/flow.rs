//! The order path end to end with the real catalog worker over RabbitMQ: placed → paid →
//! shipped → delivered → returned, the decline and out-of-stock endings, duplicates and a crash
//! between commit and publish.

use std::{collections::BTreeMap, time::Duration};

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use shop_order::entity::{OrderStatus as DbOrderStatus, order, refund};
use shop_platform::{
    grpc::identity::Role,
    outbox::{self, OutboxGauge},
    queue::{self, Message},
    testing::{self, metrics::Scraper},
};
use shop_proto::pb::{
    events::{StockRejected, StockReleased, StockReserved, StockShortage},
    order::{OrderItemStatus, OrderStatus, PaymentStatus},
};
use uuid::Uuid;

use crate::helpers::{Options, caller, spawn, spawn_with, statements, statements_of};

#[tokio::test]
async fn an_order_is_paid_shipped_delivered_and_returned_with_stock_and_refunds_at_each_step() {
    let mesh = spawn().await;
    let lamp = mesh.product(12_900, 10).await;
    let bulb = mesh.product(5_000, 5).await;
    let customer = caller(Role::Customer);

    let placed = mesh.place(&customer, "first", &[(lamp, 2), (bulb, 1)]).await.unwrap();
    assert_eq!(placed.status(), OrderStatus::Pending);
    assert_eq!(placed.total.as_ref().unwrap().amount, 30_800);
    assert_eq!(placed.total.as_ref().unwrap().currency, "KRW");
    assert_eq!(placed.payment.as_ref().unwrap().status(), PaymentStatus::Pending);
    assert_eq!(placed.items.len(), 2);
    assert!(placed.items[0].name.starts_with("Lamp"), "the name is snapshotted");
    assert_eq!(placed.items[0].unit_price.as_ref().unwrap().amount, 12_900);

    let paid = mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    let payment = paid.payment.clone().unwrap();
    assert_eq!(payment.status(), PaymentStatus::Captured);
    assert_eq!(payment.amount.unwrap().amount, 30_800);
    assert_eq!(payment.refunded.unwrap().amount, 0);
    assert!(payment.captured_at.is_some());
    assert!(paid.items.iter().all(|item| item.status() == OrderItemStatus::Ordered));
    mesh.expect_stock(lamp, 10, 8).await;
    mesh.expect_stock(bulb, 5, 4).await;

    // Ships exactly ship_after after payment, not a microsecond before.
    mesh.clock.advance(mesh.config.ship_after - Duration::from_micros(1));
    assert_eq!(mesh.tick().await.shipped, 0);
    mesh.clock.advance(Duration::from_micros(1));
    assert_eq!(mesh.tick().await.shipped, 1);
    let shipped = mesh.get(&customer, &placed.id).await.unwrap();
    assert_eq!(shipped.status(), OrderStatus::Shipped);
    assert!(
        shipped
            .items
            .iter()
            .all(|item| item.status() == OrderItemStatus::Shipped && item.shipped_at.is_some())
    );
    assert_eq!(mesh.tick().await.shipped, 0, "an order ships once");

    mesh.clock.advance(mesh.config.deliver_after - Duration::from_micros(1));
    assert_eq!(mesh.tick().await.delivered, 0);
    mesh.clock.advance(Duration::from_micros(1));
    assert_eq!(mesh.tick().await.delivered, 1);
    let delivered = mesh.get(&customer, &placed.id).await.unwrap();
    assert_eq!(delivered.status(), OrderStatus::Delivered);
    assert!(
        delivered
            .items
            .iter()
            .all(|item| item.status() == OrderItemStatus::Delivered)
    );
    assert!(delivered.items.iter().all(|item| item.delivered_at.is_some()));

    // Return the bulb: its price back, its stock back, the lamp untouched.
    let bulb_item = delivered
        .items
        .iter()
        .find(|item| item.product_id == bulb.to_string())
        .unwrap();
    let after_bulb = mesh.return_item(&customer, &placed.id, &bulb_item.id).await.unwrap();
    assert_eq!(after_bulb.status(), OrderStatus::Delivered);
    let payment = after_bulb.payment.clone().unwrap();
    assert_eq!(payment.status(), PaymentStatus::PartiallyRefunded);
    assert_eq!(payment.refunded.unwrap().amount, 5_000);
    let returned = after_bulb.items.iter().find(|item| item.id == bulb_item.id).unwrap();
    assert_eq!(returned.status(), OrderItemStatus::Returned);
    assert!(returned.returned_at.is_some());
    mesh.expect_stock(bulb, 5, 5).await;
    mesh.expect_stock(lamp, 10, 8).await;

    // Return the lamps: the whole payment refunded, all stock back.
    let lamp_item = delivered
        .items
        .iter()
        .find(|item| item.product_id == lamp.to_string())
        .unwrap();
    let after_lamp = mesh.return_item(&customer, &placed.id, &lamp_item.id).await.unwrap();
    assert_eq!(after_lamp.status(), OrderStatus::Delivered);
    let payment = after_lamp.payment.unwrap();
    assert_eq!(payment.status(), PaymentStatus::Refunded);
    assert_eq!(payment.refunded.unwrap().amount, 30_800);
    mesh.expect_stock(lamp, 10, 10).await;

    let order_id: Uuid = placed.id.parse().unwrap();
    let refunds = refund::Entity::find()
        .filter(refund::Column::OrderId.eq(order_id))
        .all(mesh.db())
        .await
        .unwrap();
    let mut amounts: Vec<i64> = refunds.iter().map(|refund| refund.amount).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, vec![5_000, 25_800]);
    assert_eq!(mesh.payments.captures(order_id), 1);
    // The catalog confirmed both releases.
    mesh.wait_until_released(&placed.id, 2).await;
}

#[tokio::test]
async fn a_declined_payment_fails_the_order_and_gives_the_stock_back() {
    let metrics = Scraper::install();
    let mesh = spawn().await;
    // The built-in provider's documented trigger: a total of exactly 402.
    let trigger = mesh.product(402, 3).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "declined", &[(trigger, 1)]).await.unwrap();

    let failed = mesh.wait_for(&customer, &placed.id, OrderStatus::PaymentFailed).await;
    assert_eq!(failed.status_reason.as_deref(), Some("payment_declined"));
    assert_eq!(orders_counted(&metrics, "payment_failed").await, Some(1.0));
    assert_eq!(orders_counted(&metrics, "paid").await, Some(0.0));
    assert_eq!(failed.payment.as_ref().unwrap().status(), PaymentStatus::Declined);
    assert!(failed.payment.as_ref().unwrap().captured_at.is_none());
    assert!(
        failed
            .items
            .iter()
            .all(|item| item.status() == OrderItemStatus::Cancelled)
    );
    mesh.expect_stock(trigger, 3, 3).await;
    mesh.wait_until_released(&placed.id, 1).await;
}

#[tokio::test]
async fn a_short_order_is_rejected_by_the_catalog_naming_its_short_products() {
    let mesh = spawn_with(Options {
        // The order service keeps the catalog's first answer (3 left), so the short order below
        // asks the catalog, whose rejection this test is about.
        env: &[("SHOP_ORDER_PRODUCT_TTL", "1m")],
        ..Options::default()
    })
    .await;
    let plenty = mesh.product(1_000, 10).await;
    let scarce = mesh.product(2_000, 3).await;
    let customer = caller(Role::Customer);
    let first = mesh
        .place(&customer, "first", &[(plenty, 1), (scarce, 1)])
        .await
        .unwrap();
    mesh.wait_for(&customer, &first.id, OrderStatus::Paid).await;
    mesh.set_stock(scarce, 1).await;
    let placed = mesh
        .place(&customer, "short", &[(plenty, 1), (scarce, 2)])
        .await
        .unwrap();

    // The reason names the short product, and only it.
    expect_out_of_stock(&mesh, &customer, &placed.id, scarce, 2, 1).await;
    assert_eq!(reservations_asked(&mesh).await, 2, "the catalog was asked");
    mesh.expect_stock(plenty, 10, 9).await;
    // Set to 1 with the first order's unit held: 2 = 1 left + 1 held.
    mesh.expect_stock(scarce, 2, 1).await;
    assert_eq!(mesh.payments.captures(placed.id.parse().unwrap()), 0);
}

/// Waits for the order `id` to be rejected for want of `product` alone, and checks what the
/// rejection wrote: the reason, the shortage (`requested`, `available`), the payment voided and
/// every item cancelled.
async fn expect_out_of_stock(
    mesh: &crate::helpers::TestMesh,
    customer: &shop_platform::grpc::identity::Caller,
    id: &str,
    product: Uuid,
    requested: u32,
    available: i64,
) {
    let rejected = mesh.wait_for(customer, id, OrderStatus::Rejected).await;
    assert_eq!(rejected.status_reason, Some(format!("out_of_stock: {product}")));
    assert_eq!(rejected.payment.as_ref().unwrap().status(), PaymentStatus::Voided);
    assert!(
        rejected
            .items
            .iter()
            .all(|item| item.status() == OrderItemStatus::Cancelled)
    );
    let row = order::Entity::find_by_id(id.parse::<Uuid>().unwrap())
        .one(mesh.db())
        .await
        .unwrap()
        .unwrap();
    let shortages: serde_json::Value = serde_json::from_str(row.shortages.as_deref().unwrap()).unwrap();
    assert_eq!(
        shortages,
        serde_json::json!([{"product_id": product.to_string(), "requested": requested, "available": available}])
    );
}

/// ReserveStock messages the order service has written to its outbox so far.
async fn reservations_asked(mesh: &crate::helpers::TestMesh) -> usize {
    outbox::entity::Entity::find()
        .all(mesh.db())
        .await
        .unwrap()
        .iter()
        .filter(|row| row.kind.ends_with("ReserveStock"))
        .count()
}

#[tokio::test]
async fn an_order_for_a_sold_out_product_is_rejected_without_asking_the_catalog() {
    let metrics = Scraper::install();
    let mesh = spawn_with(Options {
        // Every order reads the catalog's stock afresh, so the test needs no waiting.
        env: &[("SHOP_ORDER_PRODUCT_TTL", "0s")],
        ..Options::default()
    })
    .await;
    let scarce = mesh.product(2_000, 1).await;
    let first = caller(Role::Customer);
    let paid = mesh.place(&first, "first", &[(scarce, 1)]).await.unwrap();
    mesh.wait_for(&first, &paid.id, OrderStatus::Paid).await;
    assert_eq!(reservations_asked(&mesh).await, 1);

    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "late", &[(scarce, 1)]).await.unwrap();
    // Accepted like any order, then rejected as the catalog would have.
    assert_eq!(placed.status(), OrderStatus::Pending);
    expect_out_of_stock(&mesh, &customer, &placed.id, scarce, 1, 0).await;
    // Without a reservation asked: no ReserveStock for it, nothing for the catalog to record.
    assert_eq!(reservations_asked(&mesh).await, 1, "the catalog was not asked");
    assert_eq!(reservations_ended(&metrics, "rejected").await, Some(1.0));
    mesh.expect_stock(scarce, 1, 0).await;

    // A restock reaches the next order (here at once: the answers are not kept).
    mesh.set_stock(scarce, 1).await;
    let restocked = mesh.place(&customer, "restocked", &[(scarce, 1)]).await.unwrap();
    mesh.wait_for(&customer, &restocked.id, OrderStatus::Paid).await;
    assert_eq!(reservations_asked(&mesh).await, 2);
}

#[tokio::test]
async fn the_catalogs_rejection_teaches_placement_that_a_product_sold_out() {
    let mesh = spawn_with(Options {
        // The catalog's answers are kept long: only its rejection can tell placement the news.
        env: &[("SHOP_ORDER_PRODUCT_TTL", "1m")],
        ..Options::default()
    })
    .await;
    let scarce = mesh.product(2_000, 1).await;
    let customer = caller(Role::Customer);
    let paid = mesh.place(&customer, "first", &[(scarce, 1)]).await.unwrap();
    mesh.wait_for(&customer, &paid.id, OrderStatus::Paid).await;
    // The answer kept says one unit is left: the catalog is asked, and refuses.
    let refused = mesh.place(&customer, "second", &[(scarce, 1)]).await.unwrap();
    expect_out_of_stock(&mesh, &customer, &refused.id, scarce, 1, 0).await;
    assert_eq!(reservations_asked(&mesh).await, 2);

    // Its rejection said none is left: the next order is refused without asking.
    let late = mesh.place(&customer, "third", &[(scarce, 1)]).await.unwrap();
    expect_out_of_stock(&mesh, &customer, &late.id, scarce, 1, 0).await;
    assert_eq!(reservations_asked(&mesh).await, 2, "the catalog was not asked again");
}

#[tokio::test]
async fn sold_out_orders_are_written_rejected_in_their_placements_transaction() {
    const ORDERS: usize = 20;
    let metrics = Scraper::install();
    let mesh = spawn_with(Options {
        env: &[("SHOP_ORDER_PRODUCT_TTL", "0s")],
        ..Options::default()
    })
    .await;
    let sold_out = mesh.product(1_000, 0).await;
    let customer = caller(Role::Customer);
    let (placed, counts) = statements_of(&metrics, ["SELECT"], async {
        let mut placed = Vec::with_capacity(ORDERS);
        for n in 0..ORDERS {
            // One at a time: each is a batch of its own, rejected when the answer comes.
            placed.push(
                mesh.place(&customer, &format!("late-{n}"), &[(sold_out, 1)])
                    .await
                    .unwrap(),
            );
        }
        placed
    })
    .await;
    let selects = counts.net(0);
    // Each placement looks its key up (1), and that is all it reads. Rejecting in a
    // transaction of its own after the placement's made 1 to 3 more an order (locking the
    // order, reading its items and payments again), and waking the relay for an order that
    // wrote no message 2 more (its pass's lock and read).
    assert!(
        selects < 1.5 * ORDERS as f64,
        "{selects} SELECTs for {ORDERS} sold-out orders: {counts:?}"
    );
    for order in &placed {
        expect_out_of_stock(&mesh, &customer, &order.id, sold_out, 1, 0).await;
    }
}

#[tokio::test]
async fn a_served_order_is_read_once_after_placement_and_its_capture_is_handed_on() {
    const ORDERS: usize = 20;
    let metrics = Scraper::install();
    let mesh = spawn().await;
    let product = mesh.product(1_000, ORDERS as i64).await;
    let customer = caller(Role::Customer);
    let ((), counts) = statements_of(&metrics, ["SELECT", ""], async {
        for n in 0..ORDERS {
            // One at a time, each waited for until paid (from the metrics, which read nothing):
            // each order's steps are batches of their own.
            mesh.place(&customer, &format!("served-{n}"), &[(product, 1)])
                .await
                .unwrap();
            metrics
                .wait_for("shop_orders_total", &[r#"shop_order_event="paid""#], |paid| {
                    paid > n as f64
                })
                .await;
        }
    })
    .await;
    let (selects, statements) = (counts.net(0) / ORDERS as f64, counts.net(1) / ORDERS as f64);
    // The relay's pass takes its lock and reads (2), the stock result and the capture's record
    // lock the order (1 each): 3.3 here. Reading the items and payment again with each lock
    // made 8.3, and looking the key up before the placement 1 more.
    assert!(selects < 5.0, "{selects} SELECTs an order: {counts:?}");
    // Besides: the placement's inserts, the relay marking its message sent, the result's inbox,
    // order and capture task, and the capture's record in one statement: 14.7 in all here.
    // With the reads above, the UPDATE that took each capture from the database and the
    // record's three UPDATEs, 21.5.
    assert!(statements < 18.0, "{statements} statements an order: {counts:?}");
    assert_eq!(mesh.payments.captures_by_instance().values().sum::<usize>(), ORDERS);
    mesh.expect_stock(product, ORDERS as i64, 0).await;
}

#[tokio::test]
async fn duplicate_stock_results_are_applied_once() {
    let mesh = spawn_with(Options {
        // One consumer takes the results in queue order, so the barrier below comes last; the
        // catalog's answer about the product (1 left) is kept, so the second order asks the
        // catalog, whose rejection is one of the results repeated below.
        env: &[("SHOP_ORDER_RESULT_CONSUMERS", "1"), ("SHOP_ORDER_PRODUCT_TTL", "1m")],
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, 1).await;
    let first = caller(Role::Customer);
    let second = caller(Role::Customer);
    let paid = mesh.place(&first, "a", &[(product, 1)]).await.unwrap();
    mesh.wait_for(&first, &paid.id, OrderStatus::Paid).await;
    let rejected = mesh.place(&second, "b", &[(product, 1)]).await.unwrap();
    mesh.wait_for(&second, &rejected.id, OrderStatus::Rejected).await;
    let paid_before = mesh.get(&first, &paid.id).await.unwrap();

    // Every answer the catalog published, again under the same message ids (redeliveries),
    // then the opposite answers under new ids (a catalog repeating itself wrongly).
    let mut again: Vec<Message> = outbox::entity::Entity::find()
        .all(&mesh.catalog.db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| Message {
            id: row.id.to_string(),
            kind: row.kind,
            payload: row.payload,
            headers: BTreeMap::new(),
        })
        .collect();
    assert_eq!(again.len(), 2);
    again.push(fresh(StockReserved {
        order_id: rejected.id.clone(),
    }));
    again.push(fresh(StockRejected {
        order_id: paid.id.clone(),
        short: vec![StockShortage {
            product_id: product.to_string(),
            requested: 1,
            available: 0,
        }],
    }));
    again.push(fresh(StockReserved {
        order_id: paid.id.clone(),
    }));
    let barrier = fresh(StockReleased {
        order_id: paid.id.clone(),
        release_id: Uuid::now_v7().to_string(),
    });
    let barrier_id = barrier.id.clone();
    again.push(barrier);
    let queue = queue::from_url(&testing::amqp_url()).await.unwrap();
    queue.publish(&mesh.config.queues.results, again).await.unwrap();
    mesh.wait_for_inbox(&barrier_id).await;

    assert_eq!(mesh.get(&first, &paid.id).await.unwrap(), paid_before);
    assert_eq!(
        mesh.get(&second, &rejected.id).await.unwrap().status(),
        OrderStatus::Rejected
    );
    assert_eq!(mesh.payments.captures(paid.id.parse().unwrap()), 1);
    assert_eq!(mesh.payments.captures(rejected.id.parse().unwrap()), 0);
    mesh.expect_stock(product, 1, 0).await;
}

fn fresh<M: prost::Name>(message: M) -> Message {
    Message {
        id: Uuid::now_v7().to_string(),
        kind: shop_proto::message_type::<M>(),
        payload: message.encode_to_vec(),
        headers: BTreeMap::new(),
    }
}

#[tokio::test]
async fn an_order_committed_but_never_published_completes_once_a_relay_runs() {
    let mut mesh = spawn_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, 5).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "crash", &[(product, 2)]).await.unwrap();

    // The process dies after the commit, before anything was published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mesh.get(&customer, &placed.id).await.unwrap().status(),
        OrderStatus::Pending
    );
    mesh.expect_stock(product, 5, 5).await;
    mesh.stop_order_service(0).await;

    // A new process (with its relay) finds the unsent ReserveStock and the order completes.
    mesh.start_order_service(true).await;
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    mesh.expect_stock(product, 5, 3).await;
}

#[tokio::test]
async fn an_order_cancelled_before_its_reservation_arrives_gets_its_stock_back_when_it_does() {
    let mesh = spawn_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, 5).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "slow", &[(product, 2)]).await.unwrap();
    let cancelled = mesh.cancel(&customer, &placed.id).await.unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(cancelled.payment.as_ref().unwrap().status(), PaymentStatus::Voided);

    // The ReserveStock goes out only now: the catalog reserves, and the order service, finding
    // the order cancelled, gives the stock back.
    let _relay = mesh.start_relay().await;
    mesh.wait_until_released(&placed.id, 1).await;
    mesh.expect_stock(product, 5, 5).await;
    let after = mesh.get(&customer, &placed.id).await.unwrap();
    assert_eq!(after.status(), OrderStatus::Cancelled);
    assert_eq!(mesh.payments.captures(placed.id.parse().unwrap()), 0);
}

/// `shop_orders_total` for `event`, from a real scrape.
async fn orders_counted(metrics: &Scraper, event: &str) -> Option<f64> {
    let label = format!("shop_order_event=\"{event}\"");
    metrics.value("shop_orders_total", &[&label]).await
}

/// How many reservations ended as `outcome`, from a real scrape.
async fn reservations_ended(metrics: &Scraper, outcome: &str) -> Option<f64> {
    let label = format!("shop_order_outcome=\"{outcome}\"");
    metrics
        .value("shop_order_reservation_duration_seconds_count", &[&label])
        .await
}

#[tokio::test]
async fn placing_paying_shipping_and_delivering_an_order_moves_the_funnel_counters() {
    let metrics = Scraper::install();
    let mesh = spawn().await;
    let lamp = mesh.product(12_900, 10).await;
    let customer = caller(Role::Customer);
    // Every event is there from the start, at 0, so that the first one is an increase.
    for event in [
        "placed",
        "paid",
        "rejected",
        "payment_failed",
        "cancelled",
        "shipped",
        "delivered",
        "returned",
    ] {
        assert_eq!(orders_counted(&metrics, event).await, Some(0.0), "{event}");
    }

    let placed = mesh.place(&customer, "counted", &[(lamp, 1)]).await.unwrap();
    // A replay of the same idempotent request is not a second order.
    mesh.place(&customer, "counted", &[(lamp, 1)]).await.unwrap();
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    assert_eq!(orders_counted(&metrics, "placed").await, Some(1.0));
    assert_eq!(orders_counted(&metrics, "paid").await, Some(1.0));
    assert_eq!(orders_counted(&metrics, "cancelled").await, Some(0.0));
    assert_eq!(reservations_ended(&metrics, "paid").await, Some(1.0));

    mesh.clock.advance(mesh.config.ship_after);
    assert_eq!(mesh.tick().await.shipped, 1);
    assert_eq!(orders_counted(&metrics, "shipped").await, Some(1.0));
    mesh.clock.advance(mesh.config.deliver_after);
    assert_eq!(mesh.tick().await.delivered, 1);
    assert_eq!(orders_counted(&metrics, "delivered").await, Some(1.0));
    assert_eq!(orders_counted(&metrics, "shipped").await, Some(1.0), "shipped once");
}

#[tokio::test]
async fn an_order_out_of_stock_counts_as_rejected_with_its_reservation_time() {
    let metrics = Scraper::install();
    let mesh = spawn().await;
    let scarce = mesh.product(2_000, 1).await;
    let customer = caller(Role::Customer);
    let placed = mesh.place(&customer, "too-many", &[(scarce, 2)]).await.unwrap();
    mesh.wait_for(&customer, &placed.id, OrderStatus::Rejected).await;

    assert_eq!(orders_counted(&metrics, "rejected").await, Some(1.0));
    assert_eq!(orders_counted(&metrics, "paid").await, Some(0.0));
    assert_eq!(reservations_ended(&metrics, "rejected").await, Some(1.0));
    assert_eq!(reservations_ended(&metrics, "paid").await, None, "nothing paid");
    // The reservation took less than the histogram's top bucket.
    let fast = ["shop_order_outcome=\"rejected\"", "le=\"10\""];
    assert_eq!(
        metrics
            .value("shop_order_reservation_duration_seconds_bucket", &fast)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn the_pending_orders_and_the_outbox_backlog_are_gauged() {
    let metrics = Scraper::install();
    // No relay: the ReserveStock stays in the outbox and the order stays pending.
    let mesh = spawn_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    let lamp = mesh.product(12_900, 10).await;
    let customer = caller(Role::Customer);
    let pending = &mesh.orders[0].pending;
    pending.poll().await.unwrap();
    assert_eq!(metrics.value("shop_orders_pending", &[]).await, Some(0.0));
    assert_eq!(
        metrics.value("shop_orders_pending_oldest_age_seconds", &[]).await,
        Some(0.0)
    );

    mesh.place(&customer, "waits-1", &[(lamp, 1)]).await.unwrap();
    mesh.clock.advance(Duration::from_secs(90));
    mesh.place(&customer, "waits-2", &[(lamp, 1)]).await.unwrap();
    pending.poll().await.unwrap();
    assert_eq!(metrics.value("shop_orders_pending", &[]).await, Some(2.0));
    assert_eq!(
        metrics.value("shop_orders_pending_oldest_age_seconds", &[]).await,
        Some(90.0),
        "the first order has waited 90 s on the service's clock"
    );

    let outbox = OutboxGauge::new(mesh.db().clone(), "order");
    outbox.poll().await.unwrap();
    let order_outbox = ["shop_outbox=\"order\""];
    assert_eq!(metrics.value("shop_outbox_pending", &order_outbox).await, Some(2.0));
    let waited = metrics
        .value("shop_outbox_oldest_age_seconds", &order_outbox)
        .await
        .unwrap();
    assert!(waited >= 0.0, "{waited}");
}

/// Orders in a burst.
const BURST: usize = 40;

/// Places [`BURST`] single-unit orders of a product with `stock` units while no relay runs,
/// then lets their ReserveStock messages go out together and waits until every order is
/// `settled`: the product, the customer, the orders' ids, and the statements of `operation`
/// the order service's pool ran from the release of the messages until then.
async fn burst<const N: usize>(
    metrics: &Scraper,
    mesh: &crate::helpers::TestMesh,
    stock: i64,
    settled: DbOrderStatus,
    operations: [&str; N],
) -> (Uuid, shop_platform::grpc::identity::Caller, Vec<String>, [f64; N]) {
    // With `stock` 0: a product sold out after the order service read its stock (1, kept for
    // the test's `SHOP_ORDER_PRODUCT_TTL`), so every order asks the catalog, which rejects it.
    let product = mesh.product(1_000, stock.max(1)).await;
    let customer = caller(Role::Customer);
    let mut placed = Vec::with_capacity(BURST);
    for n in 0..BURST {
        let order = mesh
            .place(&customer, &format!("burst-{n}"), &[(product, 1)])
            .await
            .unwrap();
        placed.push(order.id);
        if n == 0 && stock == 0 {
            mesh.set_stock(product, 0).await;
        }
    }
    // Watched on a connection of the test's own, whose queries the service's pool does not count.
    let url = mesh.catalog.var("DATABASE_URL").unwrap();
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options.set_schema_search_path("order".to_owned());
    let watcher = sea_orm::Database::connect(options).await.unwrap();
    let count = || async {
        order::Entity::find()
            .filter(order::Column::Status.eq(settled))
            .count(&watcher)
            .await
            .unwrap()
    };

    let before = statements(metrics, operations).await;
    let _relay = mesh.start_relay().await;
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while count().await < BURST as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {BURST} {settled:?}",
            count().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let after = statements(metrics, operations).await;
    (product, customer, placed, std::array::from_fn(|n| after[n] - before[n]))
}

#[tokio::test]
async fn a_burst_of_stock_results_is_applied_with_a_few_statements_per_batch() {
    let metrics = Scraper::install();
    let mesh = spawn_with(Options {
        relay: false,
        env: &[("SHOP_ORDER_PRODUCT_TTL", "1m")],
        ..Options::default()
    })
    .await;
    let (sold_out, customer, placed, [updates]) = burst(&metrics, &mesh, 0, DbOrderStatus::Rejected, ["UPDATE"]).await;
    // A rejection updated its order, payment and items on its own: 3 UPDATEs an order, 120
    // here. A batch makes 3 whatever its size; the relay (marking rows sent) and the payment
    // worker's polls make a few more, more under load, when results arrive in smaller batches.
    assert!(
        updates < 2.0 * BURST as f64,
        "{updates} UPDATEs for {BURST} stock results"
    );

    for id in &placed {
        let order = mesh.get(&customer, id).await.unwrap();
        assert_eq!(order.status(), OrderStatus::Rejected);
        assert_eq!(order.status_reason, Some(format!("out_of_stock: {sold_out}")));
        assert_eq!(order.payment.as_ref().unwrap().status(), PaymentStatus::Voided);
        assert!(
            order
                .items
                .iter()
                .all(|item| item.status() == OrderItemStatus::Cancelled)
        );
    }
}

#[tokio::test]
async fn a_burst_of_captures_is_recorded_with_the_orders_locked_together() {
    let metrics = Scraper::install();
    let mesh = spawn_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    let (product, customer, placed, [selects, updates]) =
        burst(&metrics, &mesh, BURST as i64, DbOrderStatus::Paid, ["SELECT", "UPDATE"]).await;
    // Recording a capture locked and read its order, items and payment on its own: 3 SELECTs
    // an order, 120 here. Together they are 3 a batch of answers; the results' batches and the
    // relay's passes make the rest, more under load.
    assert!(
        selects < 2.5 * BURST as f64,
        "{selects} SELECTs for {BURST} paid orders"
    );
    // And it updated its task, payment and order one by one: 3 UPDATEs an order paid, 120 here
    // before the results' and the relay's own. Now 3 a batch of answers.
    assert!(
        updates < 2.0 * BURST as f64,
        "{updates} UPDATEs for {BURST} paid orders"
    );

    for id in &placed {
        let order = mesh.get(&customer, id).await.unwrap();
        assert_eq!(order.status(), OrderStatus::Paid);
        assert_eq!(order.payment.as_ref().unwrap().status(), PaymentStatus::Captured);
        assert_eq!(mesh.payments.captures(id.parse().unwrap()), 1);
    }
    mesh.expect_stock(product, BURST as i64, 0).await;
}
