//! PlaceOrder: idempotency keys and the checks before anything is written (orders from the cart
//! are in `from_cart`).

use futures::{StreamExt as _, stream};
use shop_order::entity::OrderStatus as StoredStatus;
use shop_platform::grpc::identity::Role;
use shop_proto::pb::order::{
    ListOrdersRequest, OrderLine, OrderLines, OrderStatus, PlaceOrderRequest, place_order_request::Source,
};
use tonic::{Code, Request};
use uuid::Uuid;

use shop_platform::testing::metrics::Scraper;

use crate::{
    catalog::catalog_batches,
    helpers::{Options, caller, code_of, signed, spawn, spawn_with, statements_of},
};

#[tokio::test]
async fn a_retried_placement_returns_the_same_order() {
    let mesh = spawn().await;
    let product = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);

    let first = mesh.place(&customer, "retry-me", &[(product, 2)]).await.unwrap();
    let again = mesh
        .place(&customer, "retry-me", &[(product, 1), (product, 1)])
        .await
        .unwrap();
    assert_eq!(
        again.id, first.id,
        "the same request, with its lines split, is the same request"
    );

    // Ten concurrent calls with one key: one order, and every call gets it (the key is written
    // in the order's transaction, and a second writer of the key waits for the first).
    let line = [(product, 1)];
    let results: Vec<_> = stream::iter(0..10)
        .map(|_| mesh.place(&customer, "burst", &line))
        .buffer_unordered(10)
        .collect()
        .await;
    let mut ids: Vec<String> = results.into_iter().map(|result| result.unwrap().id).collect();
    ids.push(mesh.place(&customer, "burst", &[(product, 1)]).await.unwrap().id);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "every call answered the same order");

    let listed = mesh
        .client()
        .list_orders(signed(ListOrdersRequest::default(), &customer))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(listed.len(), 2);
    mesh.expect_stock(product, 10, 7).await;

    // The same key with another request is a conflict; another user's key is theirs.
    let reused = mesh.place(&customer, "retry-me", &[(product, 3)]).await.unwrap_err();
    assert_eq!(code_of(&reused), (Code::AlreadyExists, "idempotency_key_reused".into()));
    let other = caller(Role::Customer);
    let theirs = mesh.place(&other, "retry-me", &[(product, 2)]).await.unwrap();
    assert_ne!(theirs.id, first.id);

    // A retry later returns the order as it is now.
    mesh.wait_for(&customer, &first.id, OrderStatus::Paid).await;
    let later = mesh.place(&customer, "retry-me", &[(product, 2)]).await.unwrap();
    assert_eq!(later.status(), OrderStatus::Paid);
}

#[tokio::test]
async fn an_order_of_explicit_lines_reads_no_key_before_it_is_written() {
    let metrics = Scraper::install();
    let mesh = spawn_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, 1_000).await;
    let customer = caller(Role::Customer);
    mesh.place(&customer, "warm-up", &[(product, 1)]).await.unwrap();

    const ORDERS: usize = 20;
    let (placed, counts) = statements_of(&metrics, ["SELECT"], async {
        let mut placed = Vec::with_capacity(ORDERS);
        for n in 0..ORDERS {
            placed.push(mesh.place(&customer, &format!("alone-{n}"), &[(product, 1)]).await);
        }
        placed
    })
    .await;
    assert!(placed.iter().all(Result::is_ok), "{placed:?}");
    // Looking each key up before writing its order was a SELECT an order; the key is claimed
    // by the INSERT that writes it.
    let selects = counts.net(0);
    assert!(
        selects < 3.0,
        "{selects} SELECTs for {ORDERS} orders placed one at a time: {counts:?}"
    );

    // Each key still answers for its own order, and a retry writes nothing.
    let retried = mesh.place(&customer, "alone-7", &[(product, 1)]).await.unwrap();
    assert!(
        placed.iter().flatten().any(|order| order.id == retried.id),
        "the retry returns the order its key placed"
    );
    assert_eq!(mesh.count(StoredStatus::Pending).await, ORDERS as u64 + 1);
}

#[tokio::test]
async fn a_retry_gets_its_order_after_the_product_is_deleted() {
    let mesh = spawn_with(Options {
        // Every order asks the catalog, so the deletion is seen at once.
        env: &[("SHOP_ORDER_PRODUCT_TTL", "0s")],
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);
    let first = mesh.place(&customer, "before-deletion", &[(product, 2)]).await.unwrap();
    mesh.delete(product).await;

    // A new order for the product is refused; the retry of the one placed is its order.
    let refused = mesh
        .place(&customer, "after-deletion", &[(product, 2)])
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&refused),
        (Code::FailedPrecondition, "product_unavailable".into())
    );
    let again = mesh.place(&customer, "before-deletion", &[(product, 2)]).await.unwrap();
    assert_eq!(again.id, first.id);
    // The same key with another request is still a conflict, not the product's refusal.
    let reused = mesh
        .place(&customer, "before-deletion", &[(product, 3)])
        .await
        .unwrap_err();
    assert_eq!(code_of(&reused), (Code::AlreadyExists, "idempotency_key_reused".into()));
}

#[tokio::test]
async fn orders_within_the_product_ttl_reuse_the_catalogs_answer_and_a_new_price_applies_after_it() {
    const TTL: std::time::Duration = std::time::Duration::from_secs(4);
    let metrics = Scraper::install();
    let mesh = spawn_with(Options {
        env: &[("SHOP_ORDER_PRODUCT_TTL", "4s")],
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, 100).await;
    let customer = caller(Role::Customer);
    let asked = catalog_batches(&metrics).await;

    let first = mesh.place(&customer, "ttl-1", &[(product, 1)]).await.unwrap();
    let answered = std::time::Instant::now();
    mesh.reprice(product, 2_000).await;
    let second = mesh.place(&customer, "ttl-2", &[(product, 2)]).await.unwrap();
    assert!(answered.elapsed() < TTL, "the test was too slow to say anything");
    assert_eq!(
        catalog_batches(&metrics).await - asked,
        1.0,
        "the second order reuses the catalog's answer to the first"
    );
    assert_eq!(first.total.unwrap().amount, 1_000);
    assert_eq!(
        second.total.unwrap().amount,
        2 * 1_000,
        "within the TTL, the price the catalog answered"
    );

    tokio::time::sleep(TTL.saturating_sub(answered.elapsed()) + std::time::Duration::from_millis(200)).await;
    let third = mesh.place(&customer, "ttl-3", &[(product, 1)]).await.unwrap();
    assert_eq!(third.total.unwrap().amount, 2_000, "after the TTL, the new price");
    assert_eq!(catalog_batches(&metrics).await - asked, 2.0);
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_written() {
    let mesh = spawn().await;
    let krw = mesh.product(1_000, 10).await;
    let usd = mesh.product_in(999, "USD", 10).await;
    let hidden = mesh.product(1_000, 10).await;
    mesh.hide(hidden).await;
    let deleted = mesh.product(1_000, 10).await;
    mesh.delete(deleted).await;
    let customer = caller(Role::Customer);

    for (lines, expected) in [
        (
            vec![(krw, 1), (Uuid::now_v7(), 1)],
            (Code::FailedPrecondition, "product_unavailable"),
        ),
        (vec![(hidden, 1)], (Code::FailedPrecondition, "product_unavailable")),
        (vec![(deleted, 1)], (Code::FailedPrecondition, "product_unavailable")),
        (vec![(krw, 1), (usd, 1)], (Code::FailedPrecondition, "mixed_currency")),
        (vec![(krw, 0)], (Code::InvalidArgument, "invalid_argument")),
        (vec![], (Code::InvalidArgument, "invalid_argument")),
    ] {
        let status = mesh.place(&customer, "bad", &lines).await.unwrap_err();
        assert_eq!(code_of(&status), (expected.0, expected.1.to_owned()), "{lines:?}");
    }
    let malformed = PlaceOrderRequest {
        idempotency_key: "bad".into(),
        source: Some(Source::Items(OrderLines {
            lines: vec![OrderLine {
                product_id: "lamp".into(),
                quantity: 1,
            }],
        })),
    };
    let status = mesh
        .client()
        .place_order(signed(malformed, &customer))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = mesh.place(&customer, "", &[(krw, 1)]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let no_source = PlaceOrderRequest {
        idempotency_key: "bad".into(),
        source: None,
    };
    let status = mesh
        .client()
        .place_order(signed(no_source, &customer))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let anonymous = mesh
        .client()
        .place_order(Request::new(PlaceOrderRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // A refused request leaves its key free: the same key with a good request works.
    let placed = mesh.place(&customer, "bad", &[(krw, 1)]).await.unwrap();
    assert_eq!(placed.status(), OrderStatus::Pending);
    // Once it settles (counting pending and paid in two queries could see it move between
    // them), it is the only order the refused requests left behind.
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    assert_eq!(mesh.count(StoredStatus::Paid).await, 1);
    assert_eq!(mesh.count(StoredStatus::Pending).await, 0);
}

#[tokio::test]
async fn an_unreachable_catalog_is_unavailable_and_writes_nothing() {
    let mesh = spawn_with(Options {
        // Nothing listens on the discard port.
        env: &[("SHOP_CATALOG_TARGET", "http://127.0.0.1:9")],
        ..Options::default()
    })
    .await;
    let customer = caller(Role::Customer);
    let status = mesh.place(&customer, "k", &[(Uuid::now_v7(), 1)]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(mesh.count(StoredStatus::Pending).await, 0);
}

#[tokio::test]
async fn a_key_held_by_an_earlier_versions_claim_is_in_use_until_its_lease_ends() {
    use sea_orm::{ActiveValue::Set, EntityTrait as _};
    use shop_order::{clock::Clock as _, entity::idempotency};

    let mesh = spawn().await;
    let product = mesh.product(1_000, 10).await;
    let customer = caller(Role::Customer);
    // What an earlier version left while placing: the key claimed, no order yet. The
    // fingerprint is the one of an order of one unit of `product`.
    let lines = [(product, 1)];
    let probe = mesh.place(&customer, "probe", &lines).await.unwrap();
    let hash = idempotency::Entity::find_by_id((customer.user_id, "probe".to_owned()))
        .one(mesh.db())
        .await
        .unwrap()
        .unwrap()
        .request_hash;
    let now = chrono::Utc::now();
    idempotency::Entity::insert(idempotency::ActiveModel {
        user_id: Set(customer.user_id),
        key: Set("legacy".to_owned()),
        request_hash: Set(hash),
        order_id: Set(None),
        claimed_until: Set(mesh.clock.now() + chrono::Duration::seconds(3)),
        created_at: Set(now),
    })
    .exec(mesh.db())
    .await
    .unwrap();

    let held = mesh.place(&customer, "legacy", &lines).await.unwrap_err();
    assert_eq!(code_of(&held), (Code::Aborted, "idempotency_key_in_use".into()));
    mesh.clock.advance(std::time::Duration::from_secs(3));
    let placed = mesh.place(&customer, "legacy", &lines).await.unwrap();
    assert_ne!(placed.id, probe.id);
    let again = mesh.place(&customer, "legacy", &lines).await.unwrap();
    assert_eq!(again.id, placed.id, "the key was taken over and bound to the new order");
}
