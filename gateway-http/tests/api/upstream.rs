//! The translation between REST and the services, against the fakes: identities, request ids
//! and client IPs go out as metadata; replies come back in the contract's shapes and statuses;
//! service error codes pass through; tokens are verified against the service's keys.

use axum::http::{Method, StatusCode, header};
use ed25519_dalek::SigningKey;
use serde_json::json;
use shop_platform::grpc::identity::Role;
use shop_proto::pb::order::place_order_request::Source;
use uuid::Uuid;

use crate::{
    fake::{Fake, LIMITED_EMAIL},
    helpers::{CLIENT_ADDR, TestApp, request},
};

async fn start() -> (TestApp, Fake) {
    let (addr, fake) = Fake::start().await;
    (TestApp::with_services(addr).await, fake)
}

#[tokio::test]
async fn a_verified_caller_is_forwarded_with_the_request_id() {
    let (app, fake) = start().await;
    let user = Uuid::new_v4();
    let mut request = request(Method::GET, "/users/me", Some(&fake.token(user, Role::Seller)), None);
    request.headers_mut().insert("x-request-id", "req-42".parse().unwrap());
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["id"], user.to_string());
    assert_eq!(reply.body["role"], "seller");
    assert!(reply.body["created_at"].as_str().unwrap().ends_with('Z'));

    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen.request_ids, ["req-42"]);
    let caller = seen.callers[0].clone().unwrap();
    assert_eq!((caller.user_id, caller.role), (user, Role::Seller));
    assert!(caller.session_id.is_some());
}

#[tokio::test]
async fn requests_arriving_while_the_keys_load_wait_for_them() {
    // A fresh gateway knows no signing key yet: the first requests, all at once, trigger one
    // fetch and wait for it, rather than finding no key and answering 401.
    let (app, fake) = start().await;
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    let replies = futures::future::join_all((0..8).map(|_| app.get("/users/me", Some(&token)))).await;
    for reply in replies {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
}

#[tokio::test]
async fn a_key_changed_behind_its_kid_is_fetched_again_on_a_bad_signature() {
    let (app, fake) = start().await;
    let user = Uuid::new_v4();
    let old = fake.token(user, Role::Customer);
    assert_eq!(app.get("/users/me", Some(&old)).await.status, StatusCode::OK);
    fake.rotate_key();
    // Past the refresh gap (one fetch a second at most), a token of the new key verifies: its
    // bad signature against the cached key makes the gateway fetch the keys again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let new = fake.token(user, Role::Customer);
    let reply = app.get("/users/me", Some(&new)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    app.get("/users/me", Some(&old))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn a_withdrawn_key_stops_verifying_within_the_refresh_interval() {
    let (addr, fake) = Fake::start().await;
    let app = TestApp::configured(addr, |config| {
        config.key_refresh_interval = std::time::Duration::from_millis(300);
    })
    .await;
    let old = fake.token(Uuid::new_v4(), Role::Customer);
    assert_eq!(app.get("/users/me", Some(&old)).await.status, StatusCode::OK);
    // The user service withdraws the key; no token of a new key arrives to reveal it. Once the
    // cached keys are older than the interval, the old key's tokens are refused.
    fake.rotate_key();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    app.get("/users/me", Some(&old))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn a_demoted_users_token_is_refused_at_once_by_the_gateway_that_demoted_them() {
    let (app, fake) = start().await;
    let (seller, admin) = (Uuid::new_v4(), Uuid::new_v4());
    let seller_token = fake.token(seller, Role::Seller);
    // Verified, and "not revoked" now cached.
    assert_eq!(app.get("/users/me", Some(&seller_token)).await.status, StatusCode::OK);
    let demoted = app
        .call(
            Method::PUT,
            &format!("/users/{seller}/role"),
            Some(&fake.token(admin, Role::Admin)),
            Some(json!({"role": "customer"})),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{demoted:?}");
    // The role change ended the seller's sessions: the old token is refused on the next
    // request, not a second later.
    app.get("/users/me", Some(&seller_token))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");
}

#[tokio::test]
async fn expired_foreign_and_hmac_tokens_are_401() {
    let (app, fake) = start().await;
    let user = Uuid::new_v4();
    app.get("/users/me", Some(&fake.token_signed_by(user, Role::Admin, -60, None)))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_expired");

    let forger = SigningKey::from_bytes(&[9; 32]);
    app.get(
        "/users/me",
        Some(&fake.token_signed_by(user, Role::Admin, 600, Some(&forger))),
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");

    // The classic confusion: HMAC keyed with the public key.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(crate::fake::KID.to_owned());
    let claims = json!({"sub": user, "role": "admin", "jti": "x", "exp": 4_102_444_800_i64});
    let hmac = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&fake.public_key()),
    )
    .unwrap();
    app.get("/users/me", Some(&hmac))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(
        fake.seen.lock().unwrap().callers.is_empty(),
        "no bad token reaches a service"
    );
}

#[tokio::test]
async fn logout_revokes_the_token_at_once() {
    let (app, fake) = start().await;
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    assert_eq!(app.get("/users/me", Some(&token)).await.status, StatusCode::OK);

    let reply = app.call(Method::POST, "/auth/logout", Some(&token), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    let logout = fake.seen.lock().unwrap().logout.clone().unwrap();
    assert!(!logout.access_token_id.is_empty());
    assert!(logout.access_token_expires_at.unwrap().seconds > chrono::Utc::now().timestamp());
    assert_eq!(logout.refresh_token, None);

    app.get("/users/me", Some(&token))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_revoked");

    let other = fake.token(Uuid::new_v4(), Role::Customer);
    let reply = app
        .post("/auth/logout", Some(&other), json!({"refresh_token": "rt-1"}))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    let logout = fake.seen.lock().unwrap().logout.clone().unwrap();
    assert_eq!(logout.refresh_token.as_deref(), Some("rt-1"));
}

#[tokio::test]
async fn email_verification_passes_the_client_ip_and_answers_202() {
    let (app, fake) = start().await;
    let reply = app
        .post("/auth/email-verifications", None, json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(reply.body, json!({}));
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen.client_ip.as_deref(), Some(CLIENT_ADDR.ip().to_string().as_str()));
    assert_eq!(seen.callers[0], None, "sign-up steps are anonymous");
}

#[tokio::test]
async fn service_error_codes_pass_through() {
    let (app, _fake) = start().await;
    app.post(
        "/auth/email-verifications/confirm",
        None,
        json!({"email": "ada@example.com", "code": "000000"}),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_code");

    let reply = app
        .post(
            "/auth/email-verifications/confirm",
            None,
            json!({"email": "ada@example.com", "code": "123456"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"verification_token": "vt", "expires_in": 900}));

    app.get(&format!("/products/{}", Uuid::new_v4()), None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
}

#[tokio::test]
async fn forged_identity_headers_never_reach_a_service() {
    let (app, fake) = start().await;
    let mut request = request(Method::GET, &format!("/products/{}", Uuid::new_v4()), None, None);
    request
        .headers_mut()
        .insert("x-shop-user-id", Uuid::new_v4().to_string().parse().unwrap());
    request
        .headers_mut()
        .insert("x-shop-user-role", "admin".parse().unwrap());
    app.send(request).await;
    assert_eq!(fake.seen.lock().unwrap().callers, [None]);
}

#[tokio::test]
async fn lists_have_items_and_a_next_cursor() {
    let (app, fake) = start().await;
    let seller = Uuid::new_v4();
    let reply = app
        .get(
            &format!("/products?q=kettle&min_price=100&max_price=20000&in_stock=true&seller_id={seller}&limit=1"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["next_cursor"], "page-2");
    let product = &reply.body["items"][0];
    assert_eq!(
        (product["price"].as_i64(), product["currency"].as_str()),
        (Some(12_900), Some("KRW"))
    );
    for field in [
        "id",
        "name",
        "description",
        "stock",
        "visible",
        "seller_id",
        "created_at",
        "updated_at",
    ] {
        assert!(!product[field].is_null(), "product.{field} missing: {product}");
    }
    let listed = fake.seen.lock().unwrap().listed.clone().unwrap();
    assert_eq!(listed.query, "kettle");
    assert_eq!(
        (listed.min_price, listed.max_price, listed.in_stock),
        (Some(100), Some(20_000), true)
    );
    assert_eq!(listed.seller_id, seller.to_string());
    assert_eq!(listed.page.unwrap().limit, 1);

    let token = fake.token(Uuid::new_v4(), Role::Customer);
    let reply = app.get("/wishlist", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["next_cursor"], serde_json::Value::Null);
    assert_eq!(reply.body["items"][0]["product"], serde_json::Value::Null);
    assert_eq!(reply.body["items"][0]["quantity"], 2);
}

#[tokio::test]
async fn adding_a_listed_product_to_the_wishlist_is_200_not_201() {
    let (app, fake) = start().await;
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    let product = Uuid::new_v4();
    let first = app
        .post("/wishlist", Some(&token), json!({"product_id": product}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body["quantity"], 1);
    assert_eq!(first.body["product"]["id"], product.to_string());
    let again = app
        .post("/wishlist", Some(&token), json!({"product_id": product, "quantity": 3}))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["id"], first.body["id"]);
}

#[tokio::test]
async fn quantities_must_be_positive_integers() {
    let (app, fake) = start().await;
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    let product = Uuid::new_v4();
    for quantity in [json!(0), json!(-1), json!(1.5), json!("2"), json!(u64::MAX)] {
        app.post(
            "/cart/items",
            Some(&token),
            json!({"product_id": product, "quantity": quantity}),
        )
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_argument");
        app.post(
            "/wishlist",
            Some(&token),
            json!({"product_id": product, "quantity": quantity}),
        )
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_argument");
    }
    app.post(
        "/cart/items",
        Some(&token),
        json!({"product_id": "nope", "quantity": 1}),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_argument");
    app.call(
        Method::PATCH,
        &format!("/cart/items/{}", Uuid::new_v4()),
        Some(&token),
        Some(json!({"quantity": -2})),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(
        fake.seen.lock().unwrap().callers.is_empty(),
        "bad input never reaches a service"
    );
}

#[tokio::test]
async fn signed_in_lists_check_their_limit_too() {
    let (app, fake) = start().await;
    let token = fake.token(Uuid::new_v4(), Role::Admin);
    for path in [
        "/orders?limit=0",
        "/orders?limit=101",
        "/users?limit=0",
        "/users?limit=500",
    ] {
        let reply = app.get(path, Some(&token)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {reply:?}");
    }
    app.get("/orders?user_id=someone", Some(&token))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn placing_an_order_needs_an_idempotency_key_and_answers_202() {
    let (app, fake) = start().await;
    let user = Uuid::new_v4();
    let token = fake.token(user, Role::Customer);
    let body = json!({"items": [{"product_id": Uuid::new_v4(), "quantity": 2}]});

    app.post("/orders", Some(&token), body.clone())
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "missing_idempotency_key");

    let mut with_both = request(
        Method::POST,
        "/orders",
        Some(&token),
        Some(json!({"items": [], "from_cart": true})),
    );
    with_both
        .headers_mut()
        .insert("idempotency-key", "k-1".parse().unwrap());
    app.send(with_both)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_argument");

    let mut place = request(Method::POST, "/orders", Some(&token), Some(body));
    place.headers_mut().insert("idempotency-key", "k-1".parse().unwrap());
    let reply = app.send(place).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let order = &reply.body;
    assert_eq!(order["status"], "pending");
    assert_eq!(order["user_id"], user.to_string());
    assert_eq!(
        (order["total"].as_i64(), order["currency"].as_str()),
        (Some(25_800), Some("KRW"))
    );
    assert_eq!(
        order["payment"],
        json!({"status": "pending", "amount": 25_800, "refunded": 0, "captured_at": null})
    );
    assert_eq!(order["items"][0]["status"], "ordered");
    assert_eq!(order["items"][0]["unit_price"], 12_900);
    assert!(order.get("status_reason").is_none());
    assert_eq!(
        reply.headers[header::LOCATION],
        format!("/api/v1/orders/{}", order["id"].as_str().unwrap())
    );

    let placed = fake.seen.lock().unwrap().placed.clone().unwrap();
    assert_eq!(placed.idempotency_key, "k-1");
    let Some(Source::Items(lines)) = placed.source else {
        panic!("expected explicit lines: {placed:?}");
    };
    assert_eq!(lines.lines[0].quantity, 2);
}

#[tokio::test]
async fn an_unavailable_service_is_503_without_details() {
    let (app, fake) = start().await;
    // The fakes serve no cart service: whatever the channel says, no internals leak.
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    let reply = app.get("/cart", Some(&token)).await;
    assert!(reply.status.is_server_error(), "{reply:?}");
    assert!(!reply.body["detail"].as_str().unwrap().contains("CartService"));
}

#[tokio::test]
async fn a_service_limit_passed_on_as_429_is_counted_as_such() {
    let metrics = shop_platform::testing::metrics::Scraper::install();
    let (app, _fake) = start().await;
    app.post("/auth/email-verifications", None, json!({"email": LIMITED_EMAIL}))
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let service = ["shop_rate_limit=\"service\""];
    assert_eq!(
        metrics.value("shop_rate_limit_rejections_total", &service).await,
        Some(1.0)
    );
    let ip = ["shop_rate_limit=\"ip\""];
    assert_eq!(metrics.value("shop_rate_limit_rejections_total", &ip).await, Some(0.0));
}

#[tokio::test]
async fn revocation_answers_are_counted_as_cache_hits_and_misses() {
    let metrics = shop_platform::testing::metrics::Scraper::install();
    let (app, fake) = start().await;
    let hit = ["shop_cache=\"revocation\"", "result=\"hit\""];
    let miss = ["shop_cache=\"revocation\"", "result=\"miss\""];
    assert_eq!(metrics.value("shop_cache_requests_total", &hit).await, Some(0.0));
    assert_eq!(metrics.value("shop_cache_requests_total", &miss).await, Some(0.0));

    // The first use of a token asks the user service; the next, within a second, does not.
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    for _ in 0..2 {
        let reply = app.get("/users/me", Some(&token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    assert_eq!(metrics.value("shop_cache_requests_total", &miss).await, Some(1.0));
    assert_eq!(metrics.value("shop_cache_requests_total", &hit).await, Some(1.0));
}

#[tokio::test]
async fn a_verified_token_is_remembered_until_the_keys_are_fetched_again() {
    let metrics = shop_platform::testing::metrics::Scraper::install();
    let (app, fake) = start().await;
    let hit = ["shop_cache=\"token\"", "result=\"hit\""];
    let miss = ["shop_cache=\"token\"", "result=\"miss\""];
    assert_eq!(metrics.value("shop_cache_requests_total", &hit).await, Some(0.0));
    assert_eq!(metrics.value("shop_cache_requests_total", &miss).await, Some(0.0));

    // The first use of a token checks its signature; the next ones do not.
    let user = Uuid::new_v4();
    let old = fake.token(user, Role::Customer);
    for _ in 0..3 {
        assert_eq!(app.get("/users/me", Some(&old)).await.status, StatusCode::OK);
    }
    assert_eq!(metrics.value("shop_cache_requests_total", &miss).await, Some(1.0));
    assert_eq!(metrics.value("shop_cache_requests_total", &hit).await, Some(2.0));

    // Fetching the keys again (here: a token of a new key behind the same kid) forgets what
    // the old keys verified: the remembered token is checked again, and refused.
    fake.rotate_key();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let new = fake.token(user, Role::Customer);
    assert_eq!(app.get("/users/me", Some(&new)).await.status, StatusCode::OK);
    app.get("/users/me", Some(&old))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(metrics.value("shop_cache_requests_total", &miss).await, Some(3.0));
    assert_eq!(metrics.value("shop_cache_requests_total", &hit).await, Some(2.0));
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let (app, fake) = start().await;
    let token = fake.token_signed_by(Uuid::new_v4(), Role::Customer, 1, None);
    assert_eq!(app.get("/users/me", Some(&token)).await.status, StatusCode::OK);
    // Past its expiry and the verification's 5 s leeway.
    tokio::time::sleep(std::time::Duration::from_millis(7_100)).await;
    app.get("/users/me", Some(&token))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_expired");
}

#[tokio::test]
async fn requests_beyond_the_per_user_limit_are_counted_as_such() {
    let metrics = shop_platform::testing::metrics::Scraper::install();
    let (addr, fake) = Fake::start().await;
    let app = TestApp::configured(addr, |config| config.rate_limit_per_user = 1).await;
    let token = fake.token(Uuid::new_v4(), Role::Customer);
    assert_eq!(app.get("/users/me", Some(&token)).await.status, StatusCode::OK);
    app.get("/users/me", Some(&token))
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let user = ["shop_rate_limit=\"user\""];
    assert_eq!(
        metrics.value("shop_rate_limit_rejections_total", &user).await,
        Some(1.0)
    );
    let ip = ["shop_rate_limit=\"ip\""];
    assert_eq!(metrics.value("shop_rate_limit_rejections_total", &ip).await, Some(0.0));
}
