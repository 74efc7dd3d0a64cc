//! `shop-admin` against the real servers: RabbitMQ (queues of each test's own, deleted after)
//! and PostgreSQL (a database per test, migrated with the order service's own migrations). The
//! library functions are driven directly, and the binary is run for `dlq list` and
//! `orders stranded` as an operator would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, future::Future, panic, process::Output, sync::Arc, time::Duration};

use chrono::Utc;
use prost::Message as _;
use sea_orm::{ActiveModelTrait as _, DatabaseConnection, EntityTrait as _, IntoActiveModel as _};
use shop_admin::{dlq, orders};
use shop_order::{
    entity::{OrderStatus, order},
    migration::Migrator,
};
use shop_platform::{
    db::{self, DatabaseConfig},
    queue::{AmqpQueue, DeadLetters, Message, QueueSpec, Selection, WorkQueue},
    testing,
};
use shop_proto::{
    message_type,
    pb::events,
    queues::{OrderQueues, StockQueues},
};
use tokio::time::{Instant, sleep, timeout};
use uuid::Uuid;

/// The most any one test may take.
const TEST_LIMIT: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_shown_and_redriven_with_its_id() {
    let name = testing::unique_name("admin.stock.results");
    with_queues(vec![name.clone()], async move {
        let queue = broker().await;
        let spec = QueueSpec::new(name.clone());
        queue.declare(&spec).await.unwrap();
        let order_id = Uuid::new_v4().to_string();
        let sent = stock_reserved(&order_id);
        dead_letter(&queue, &spec, vec![sent.clone()]).await;

        let dead = DeadLetters::connect(&testing::amqp_url()).await.unwrap();
        let counts = dlq::list(&dead, &[name.as_str()]).await.unwrap();
        assert_eq!(
            counts,
            vec![dlq::DeadLetterCount {
                queue: spec.dead_letter_queue(),
                messages: Some(1)
            }]
        );

        // The binary, as an operator runs it, with this test's queue as the results queue.
        let output = admin(&["dlq", "list"], &[("SHOP_CATALOG_RESULTS_QUEUE", &name)]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        let line = stdout.lines().find(|line| line.starts_with(&spec.dead_letter_queue()));
        assert_eq!(
            line.map(|line| line.split_whitespace().collect::<Vec<_>>()),
            Some(vec![spec.dead_letter_queue().as_str(), "1"]),
            "{stdout}"
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("dlq.list"),
            "the action is logged: {output:?}"
        );

        // Shown decoded, with its id, death and trace, and left in place.
        let letters = dlq::show(&dead, &name, 10).await.unwrap();
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!((&letter.message.id, &letter.message.payload), (&sent.id, &sent.payload));
        assert_eq!(letter.trace_id().as_deref(), Some(TRACE_ID));
        assert_eq!(
            letter
                .deaths
                .first()
                .map(|death| (death.queue.as_str(), death.reason.as_str())),
            Some((name.as_str(), "rejected"))
        );
        let text = dlq::render_letter(letter);
        for expected in [sent.id.as_str(), TRACE_ID, order_id.as_str(), "StockReserved"] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
        assert_eq!(
            depth_settles(&dead, &spec.dead_letter_queue(), 1).await,
            1,
            "show removes nothing"
        );

        // Re-driven: back on the work queue with the same id, kind, payload and trace.
        let moved = dlq::redrive(&dead, &name, &Selection::All).await.unwrap();
        assert_eq!(moved, vec![sent.id.clone()]);
        assert_eq!(depth_settles(&dead, &spec.dead_letter_queue(), 0).await, 0);
        let mut consumer = queue.consume(&name, 10).await.unwrap();
        let delivery = timeout(Duration::from_secs(5), consumer.next()).await.unwrap().unwrap();
        let back = &delivery.message;
        assert_eq!(
            (&back.id, &back.kind, &back.payload),
            (&sent.id, &sent.kind, &sent.payload)
        );
        assert_eq!(back.headers.get("traceparent"), sent.headers.get("traceparent"));
        assert!(
            !back.headers.keys().any(|key| key.starts_with("x-first-death")),
            "the old death stays behind: {:?}",
            back.headers
        );
        delivery.ack().await.unwrap();
        dead.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_by_id_moves_that_message_and_leaves_the_others() {
    let name = testing::unique_name("admin.stock.reserve");
    with_queues(vec![name.clone()], async move {
        let queue = broker().await;
        let spec = QueueSpec::new(name.clone());
        queue.declare(&spec).await.unwrap();
        let (first, second) = (stock_reserved("o-1"), stock_reserved("o-2"));
        dead_letter(&queue, &spec, vec![first.clone(), second.clone()]).await;

        let dead = DeadLetters::connect(&testing::amqp_url()).await.unwrap();
        let moved = dlq::redrive(&dead, &name, &Selection::Id(second.id.clone()))
            .await
            .unwrap();
        assert_eq!(moved, vec![second.id.clone()]);
        assert_eq!(depth_settles(&dead, &spec.dead_letter_queue(), 1).await, 1);
        let left = dlq::show(&dead, &name, 10).await.unwrap();
        assert_eq!(left.iter().map(|l| &l.message.id).collect::<Vec<_>>(), vec![&first.id]);

        let mut consumer = queue.consume(&name, 10).await.unwrap();
        let delivery = timeout(Duration::from_secs(5), consumer.next()).await.unwrap().unwrap();
        assert_eq!(delivery.message.id, second.id);
        delivery.ack().await.unwrap();
        assert!(
            timeout(Duration::from_millis(400), consumer.next()).await.is_err(),
            "only the chosen message went back"
        );

        // An id that is not there moves nothing.
        let moved = dlq::redrive(&dead, &name, &Selection::Id("absent".into()))
            .await
            .unwrap();
        assert!(moved.is_empty());
        assert_eq!(depth_settles(&dead, &spec.dead_letter_queue(), 1).await, 1);
        dead.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranded_lists_old_pending_orders_and_not_young_or_paid_ones() {
    timeout(TEST_LIMIT, async {
        testing::init_test_logging();
        let url = testing::create_postgres_database().await;
        let service_db = db::connect(&DatabaseConfig::new(url.clone(), "order")).await.unwrap();
        db::migrate::<Migrator>(&service_db, "order").await.unwrap();
        let now = Utc::now();
        let hour_ago = now - chrono::Duration::hours(1);
        let old_pending = insert_order(&service_db, OrderStatus::Pending, hour_ago).await;
        let young_pending = insert_order(&service_db, OrderStatus::Pending, now - chrono::Duration::minutes(1)).await;
        let old_paid = insert_order(&service_db, OrderStatus::Paid, hour_ago).await;

        let admin_db = orders::connect(&url, false).await.unwrap();
        let stranded = orders::stranded(&admin_db, Duration::from_secs(5 * 60), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            stranded.iter().map(|order| order.id).collect::<Vec<_>>(),
            vec![old_pending]
        );
        let all_pending = orders::stranded(&admin_db, Duration::ZERO, Utc::now()).await.unwrap();
        assert_eq!(all_pending.len(), 2, "both pending orders are older than nothing");

        // Read only: the tool's session cannot write.
        use sea_orm::ConnectionTrait as _;
        let write = admin_db
            .execute_unprepared("UPDATE orders SET status = 'cancelled'")
            .await;
        assert!(write.is_err(), "a read-only session refuses writes");

        let output = admin(&["orders", "stranded", "--older-than", "5m"], &[("DATABASE_URL", &url)]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(stdout.starts_with("1 pending order(s)"), "{stdout}");
        assert!(stdout.contains(&old_pending.to_string()), "{stdout}");
        for absent in [young_pending, old_paid] {
            assert!(!stdout.contains(&absent.to_string()), "{stdout}");
        }
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(&format!("order_ids=[\"{old_pending}\"]")),
            "{output:?}"
        );
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_asks_again_for_a_stranded_order_or_gives_it_up() {
    timeout(TEST_LIMIT, async {
        testing::init_test_logging();
        let url = testing::create_postgres_database().await;
        let service_db = db::connect(&DatabaseConfig::new(url.clone(), "order")).await.unwrap();
        db::migrate::<Migrator>(&service_db, "order").await.unwrap();
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        let stranded = insert_order(&service_db, OrderStatus::Pending, hour_ago).await;
        let paid = insert_order(&service_db, OrderStatus::Paid, hour_ago).await;
        for order_id in [stranded, paid] {
            insert_line_and_payment(&service_db, order_id, hour_ago).await;
        }
        let env = [("DATABASE_URL", url.as_str())];

        // Ask again: a new ReserveStock in the order service's outbox, for the stranded order only.
        let output = admin(&["orders", "repair", "--all", "--older-than", "5m"], &env).await;
        assert!(output.status.success(), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains(&stranded.to_string()));
        let kinds = outbox_kinds(&service_db).await;
        assert_eq!(kinds, [message_type::<events::ReserveStock>()]);
        let asked = order::Entity::find_by_id(stranded)
            .one(&service_db)
            .await
            .unwrap()
            .unwrap();
        assert!(asked.reserve_asked_at.is_some());
        assert_eq!(asked.status, OrderStatus::Pending);

        // Give up: rejected, and its stock released through the outbox.
        let output = admin(&["orders", "repair", "--id", &stranded.to_string(), "--reject"], &env).await;
        assert!(output.status.success(), "{output:?}");
        let rejected = order::Entity::find_by_id(stranded)
            .one(&service_db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rejected.status, OrderStatus::Rejected);
        assert_eq!(rejected.status_reason.as_deref(), Some("reservation_timeout"));
        assert_eq!(
            outbox_kinds(&service_db).await,
            [
                message_type::<events::ReserveStock>(),
                message_type::<events::ReleaseStock>()
            ]
        );
        let untouched = order::Entity::find_by_id(paid).one(&service_db).await.unwrap().unwrap();
        assert_eq!(untouched.status, OrderStatus::Paid, "a paid order is not the tool's");

        // Repairing it again does nothing: it is no longer pending.
        let output = admin(&["orders", "repair", "--id", &stranded.to_string(), "--reject"], &env).await;
        assert!(String::from_utf8_lossy(&output.stdout).starts_with("rejected and released the stock of 0 order(s)"));
    })
    .await
    .expect("the test took too long");
}

#[tokio::test]
async fn the_binary_refuses_bad_usage_and_missing_backends_with_64() {
    let output = admin(&["dlq", "redrive", "stock.results"], &[]).await;
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exactly one of --id ID and --all"));

    let output = admin(&["orders", "stranded"], &[("DATABASE_URL", "")]).await;
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
}

// ---- Helpers. ----

async fn broker() -> Arc<dyn WorkQueue> {
    Arc::new(AmqpQueue::connect(&testing::amqp_url()).await.unwrap())
}

/// A StockReserved for `order_id`, as the catalog's outbox publishes it.
fn stock_reserved(order_id: &str) -> Message {
    Message {
        id: Uuid::new_v4().to_string(),
        kind: message_type::<events::StockReserved>(),
        payload: events::StockReserved {
            order_id: order_id.to_owned(),
        }
        .encode_to_vec(),
        headers: BTreeMap::from([("traceparent".to_owned(), format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))]),
    }
}

/// Publishes `messages` to the queue and dead-letters each through a consumer, as a service
/// does with a message it cannot apply; returns once all are in the dead-letter queue.
async fn dead_letter(queue: &Arc<dyn WorkQueue>, spec: &QueueSpec, messages: Vec<Message>) {
    let count = messages.len();
    queue.publish(&spec.name, messages).await.unwrap();
    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
    for _ in 0..count {
        let delivery = timeout(Duration::from_secs(5), consumer.next()).await.unwrap().unwrap();
        delivery.dead_letter().await.unwrap();
    }
    drop(consumer);
    let dead = DeadLetters::connect(&testing::amqp_url()).await.unwrap();
    let settled = depth_settles(&dead, &spec.dead_letter_queue(), u32::try_from(count).unwrap()).await;
    assert_eq!(
        settled,
        u32::try_from(count).unwrap(),
        "every message reached the dead-letter queue"
    );
    dead.close().await;
}

/// The depth of `queue` once it reads `expected` (dead-lettering and acknowledgements settle
/// asynchronously), or whatever it reads after a few seconds.
async fn depth_settles(dead: &DeadLetters, queue: &str, expected: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let depth = dead.depth(queue).await.unwrap().unwrap();
        if depth == expected || Instant::now() > deadline {
            return depth;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

async fn insert_order(db: &DatabaseConnection, status: OrderStatus, placed_at: chrono::DateTime<Utc>) -> Uuid {
    let id = Uuid::new_v4();
    order::Model {
        id,
        user_id: Uuid::new_v4(),
        status,
        status_reason: None,
        currency: "KRW".to_owned(),
        total: 12_900,
        shortages: None,
        placed_at,
        paid_at: (status == OrderStatus::Paid).then_some(placed_at),
        shipped_at: None,
        delivered_at: None,
        updated_at: placed_at,
        stock_reserved_at: None,
        reserve_asked_at: None,
    }
    .into_active_model()
    .insert(db)
    .await
    .unwrap();
    id
}

/// An item and a pending payment for `order_id`, as placing writes them.
async fn insert_line_and_payment(db: &DatabaseConnection, order_id: Uuid, at: chrono::DateTime<Utc>) {
    shop_order::entity::item::Model {
        id: Uuid::new_v4(),
        order_id,
        position: 0,
        product_id: Uuid::new_v4(),
        name: "Lamp".to_owned(),
        unit_price: 12_900,
        quantity: 1,
        status: shop_order::entity::ItemStatus::Ordered,
        cart_item_id: None,
        shipped_at: None,
        delivered_at: None,
        returned_at: None,
    }
    .into_active_model()
    .insert(db)
    .await
    .unwrap();
    shop_order::entity::payment::Model {
        order_id,
        status: shop_order::entity::PaymentStatus::Pending,
        amount: 12_900,
        currency: "KRW".to_owned(),
        refunded: 0,
        provider_reference: None,
        captured_at: None,
        declined_at: None,
        created_at: at,
        updated_at: at,
    }
    .into_active_model()
    .insert(db)
    .await
    .unwrap();
}

/// The kinds of the messages in the order service's outbox, oldest first.
async fn outbox_kinds(db: &DatabaseConnection) -> Vec<String> {
    use sea_orm::QueryOrder as _;
    shop_platform::outbox::entity::Entity::find()
        .order_by_asc(shop_platform::outbox::entity::Column::Seq)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.kind)
        .collect()
}

/// Runs the `shop-admin` binary with `args`, against the test servers, with `env` on top.
async fn admin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop-admin"));
    command
        .args(args)
        .env("AMQP_URL", testing::amqp_url())
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("SHOP_LOG_FORMAT", "pretty")
        .env("NO_COLOR", "1");
    // The queues of no one, unless the test names one: `dlq list` counts only these.
    for key in StockQueues::VARIABLES.into_iter().chain(OrderQueues::VARIABLES) {
        command.env(key, testing::unique_name("admin.none"));
    }
    for (key, value) in env {
        command.env(key, value);
    }
    timeout(Duration::from_secs(30), command.output())
        .await
        .expect("shop-admin took too long")
        .unwrap()
}

/// Runs `test`, then deletes `queues` and their dead-letter queues, pass or fail.
async fn with_queues(queues: Vec<String>, test: impl Future<Output = ()> + Send + 'static) {
    testing::init_test_logging();
    let outcome = tokio::spawn(timeout(TEST_LIMIT, test)).await;
    testing::delete_queues(&queues).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_elapsed)) => panic!("the test took longer than {TEST_LIMIT:?}"),
        Err(error) => panic::resume_unwind(error.into_panic()),
    }
}
