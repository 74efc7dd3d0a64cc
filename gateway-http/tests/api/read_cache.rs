//! The edge read cache of the public catalog reads, against the fake catalog whose reads are
//! counted: hits make no call, expiry and writes through the gateway make one, concurrent
//! misses make one, hidden products are never cached, and the HTTP validators work.

use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use serde_json::json;
use shop_platform::grpc::identity::Role;
use uuid::Uuid;

use crate::{
    fake::Fake,
    helpers::{TestApp, request},
};

/// A gateway over the fake services whose edge cache keeps answers `ttl`.
async fn start(ttl: Duration) -> (TestApp, Fake) {
    let (addr, fake) = Fake::start().await;
    let app = TestApp::configured(addr, |config| config.edge_cache_ttl = ttl).await;
    (app, fake)
}

#[tokio::test]
async fn a_hit_makes_no_upstream_call_and_says_how_old_and_how_cacheable_it_is() {
    let (app, fake) = start(Duration::from_secs(30)).await;
    let id = fake.add_product(Uuid::new_v4(), true);
    for path in [
        format!("/products/{id}"),
        format!("/products/{id}/stock"),
        "/products?limit=20&q=kettle".to_owned(),
    ] {
        let before = fake.catalog_reads();
        let first = app.get(&path, None).await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        assert_eq!(first.headers[header::CACHE_CONTROL], "public, max-age=30", "{path}");
        assert!(first.headers.get(header::AGE).is_none(), "fetched, not from the cache");
        let etag = first.headers[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"'), "a strong validator: {etag}");

        let again = app.get(&path, None).await;
        assert_eq!(again.body, first.body, "{path}");
        assert_eq!(again.headers[header::ETAG], etag.as_str());
        assert_eq!(again.headers[header::AGE], "0");
        assert_eq!(fake.catalog_reads(), before + 1, "{path}: one call for two reads");
    }
    // The same list in another parameter order is the same entry.
    let before = fake.catalog_reads();
    app.get("/products?q=kettle&limit=20", None).await;
    assert_eq!(fake.catalog_reads(), before);
    // A signed-in caller reads the public answer too.
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    let reply = app.get(&format!("/products/{id}"), Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(fake.catalog_reads(), before);
}

#[tokio::test]
async fn an_expired_entry_is_fetched_again_once() {
    let (app, fake) = start(Duration::from_millis(300)).await;
    let id = fake.add_product(Uuid::new_v4(), true);
    let path = format!("/products/{id}");
    app.get(&path, None).await;
    app.get(&path, None).await;
    assert_eq!(fake.catalog_reads(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.get(&path, None).await;
    app.get(&path, None).await;
    assert_eq!(fake.catalog_reads(), 2);
}

#[tokio::test]
async fn writes_through_the_gateway_are_seen_at_once() {
    let (app, fake) = start(Duration::from_secs(60)).await;
    let seller = Uuid::new_v4();
    let token = fake.token(seller, Role::Seller);
    let id = fake.add_product(seller, true);
    let (product, stock) = (format!("/products/{id}"), format!("/products/{id}/stock"));
    assert_eq!(app.get(&product, None).await.body["name"], "Kettle");
    assert_eq!(app.get(&stock, None).await.body["stock"], 3);
    app.get("/products", None).await;
    let reads = fake.catalog_reads();

    let renamed = app
        .call(Method::PATCH, &product, Some(&token), Some(json!({"name": "Teapot"})))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    assert_eq!(app.get(&product, None).await.body["name"], "Teapot");
    app.get("/products", None).await;
    assert_eq!(
        fake.catalog_reads(),
        reads + 2,
        "the product and the list fetched again"
    );

    let restocked = app
        .call(Method::PUT, &stock, Some(&token), Some(json!({"stock": 9})))
        .await;
    assert_eq!(restocked.status, StatusCode::OK, "{restocked:?}");
    assert_eq!(app.get(&stock, None).await.body["stock"], 9);
    assert_eq!(app.get(&product, None).await.body["stock"], 9);

    // Hidden by its seller: gone for everyone else at once.
    app.call(Method::PATCH, &product, Some(&token), Some(json!({"visible": false})))
        .await;
    app.get(&product, None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    app.get(&stock, None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
}

#[tokio::test]
async fn hidden_products_are_never_served_from_the_cache() {
    let (app, fake) = start(Duration::from_secs(60)).await;
    let seller = Uuid::new_v4();
    let owner = fake.token(seller, Role::Seller);
    let stranger = fake.token(Uuid::new_v4(), Role::Customer);
    let id = fake.add_product(seller, false);
    for path in [format!("/products/{id}"), format!("/products/{id}/stock")] {
        let seen = app.get(&path, Some(&owner)).await;
        assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
        assert_eq!(seen.headers[header::CACHE_CONTROL], "private, no-store");
        assert!(seen.headers.get(header::AGE).is_none());
        assert!(seen.headers.get(header::ETAG).is_some(), "validated all the same");
        for token in [None, Some(stranger.as_str())] {
            app.get(&path, token)
                .await
                .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
        }
        // The owner's second read is asked again, not remembered.
        let reads = fake.catalog_reads();
        assert_eq!(app.get(&path, Some(&owner)).await.status, StatusCode::OK);
        assert!(fake.catalog_reads() > reads, "{path}");
    }
}

#[tokio::test]
async fn concurrent_misses_of_one_key_make_one_upstream_call() {
    let (app, fake) = start(Duration::from_secs(30)).await;
    let id = fake.add_product(Uuid::new_v4(), true);
    fake.slow_catalog_reads(Duration::from_millis(200));
    let path = format!("/products/{id}");
    let replies = futures::future::join_all((0..50).map(|_| app.get(&path, None))).await;
    assert!(replies.iter().all(|reply| reply.status == StatusCode::OK));
    assert!(
        replies
            .windows(2)
            .all(|pair| pair[0].headers[header::ETAG] == pair[1].headers[header::ETAG])
    );
    assert_eq!(fake.catalog_reads(), 1);
}

#[tokio::test]
async fn a_current_copy_gets_304_with_no_body_cached_or_not() {
    for ttl in [Duration::from_secs(30), Duration::ZERO] {
        let (app, fake) = start(ttl).await;
        let id = fake.add_product(Uuid::new_v4(), true);
        let path = format!("/products/{id}");
        let first = app.get(&path, None).await;
        let etag = first.headers[header::ETAG].clone();
        let mut conditional = request(Method::GET, &path, None, None);
        conditional.headers_mut().insert(header::IF_NONE_MATCH, etag.clone());
        let (status, headers, body) = app.send_raw(conditional).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "ttl {ttl:?}");
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG], etag);
        let expected = if ttl.is_zero() {
            "public, no-cache"
        } else {
            "public, max-age=30"
        };
        assert_eq!(headers[header::CACHE_CONTROL], expected);
        // Off: every read is fetched.
        let reads = if ttl.is_zero() { 2 } else { 1 };
        assert_eq!(fake.catalog_reads(), reads, "ttl {ttl:?}");
    }
}
