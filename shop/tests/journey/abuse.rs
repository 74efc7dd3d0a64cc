//! Abuse of the public door, each test against its own running stack of separate binaries:
//! bad tokens are 401, other users' resources 404, bad input a 4xx problem+json (never a 5xx),
//! and too many requests 429 with `Retry-After`, counted across gateway replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::Signer as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    api::Api,
    journey::{Session, create_product, log_in, place_order, sign_up},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD, SigningKey, Stack},
};

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The claims of a real access token.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A compact JWS of `header` and `claims` signed with Ed25519 `seed`.
fn sign(header: &Value, claims: &Value, seed: &[u8; 32]) -> String {
    let input = format!("{}.{}", encode(header), encode(claims));
    let signature = ed25519_dalek::SigningKey::from_bytes(seed).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// An EdDSA token with `claims` signed by `key` under its own kid.
fn signed_by(key: &SigningKey, claims: &Value) -> String {
    sign(
        &json!({ "alg": "EdDSA", "typ": "JWT", "kid": key.kid }),
        claims,
        &key.seed,
    )
}

/// `claims` with a fresh token id and the given lifetime bounds.
fn reissued(claims: &Value, iat: i64, exp: i64) -> Value {
    let mut claims = claims.clone();
    claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
    claims["iat"] = json!(iat);
    claims["exp"] = json!(exp);
    claims
}

#[tokio::test]
async fn missing_forged_expired_and_unsigned_tokens_are_401() {
    let stack = Stack::services(&[]).await;
    let api = &stack.api;
    let user = sign_up(&stack.api, &stack.mail, "target").await;
    let claims = claims_of(&user.access);
    assert_eq!(claims["sub"], user.user_id.as_str());
    let key = &stack.signing_key;

    // The control: a token made here with the stack's own key is accepted, so each refusal
    // below is for the one thing that is wrong with its token.
    let genuine = signed_by(key, &reissued(&claims, now(), now() + 300));
    let me = api.get("/users/me").token(&genuine).send().await.expect(200);
    assert_eq!(me["id"], user.user_id.as_str());

    for (method, path) in [
        (Method::GET, "/users/me"),
        (Method::GET, "/users"),
        (Method::GET, "/wishlist"),
        (Method::GET, "/cart"),
        (Method::GET, "/orders"),
        (Method::POST, "/orders"),
        (Method::POST, "/products"),
        (Method::POST, "/auth/logout"),
    ] {
        api.call(method, path).send().await.problem(401, "missing_token");
    }
    // Identity headers a client sends are not identity.
    api.get("/users/me")
        .header("x-shop-user-id", &user.user_id)
        .header("x-shop-user-role", "admin")
        .send()
        .await
        .problem(401, "missing_token");
    api.get("/users")
        .token(&user.access)
        .header("x-shop-user-role", "admin")
        .header("x-shop-role", "admin")
        .send()
        .await
        .problem(403, "forbidden");

    let mut as_admin = reissued(&claims, now(), now() + 300);
    as_admin["role"] = json!("admin");
    let other_key = SigningKey::random(&key.kid);
    let expired = signed_by(key, &reissued(&claims, now() - 3_600, now() - 600));
    let parts: Vec<&str> = genuine.split('.').collect();
    let alg_none = format!(
        "{}.{}.",
        encode(&json!({ "alg": "none", "typ": "JWT", "kid": key.kid })),
        encode(&as_admin)
    );
    let alg_none_keeping_signature = format!(
        "{}.{}.{}",
        encode(&json!({ "alg": "none", "typ": "JWT", "kid": key.kid })),
        parts[1],
        parts[2]
    );
    let alg_hs256 = format!(
        "{}.{}.{}",
        encode(&json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid })),
        parts[1],
        parts[2]
    );
    let tampered = format!("{}.{}.{}", parts[0], encode(&as_admin), parts[2]);
    let unknown_kid = sign(
        &json!({ "alg": "EdDSA", "typ": "JWT", "kid": "somebody-elses-key" }),
        &as_admin,
        &SigningKey::random("x").seed,
    );
    let no_kid = sign(&json!({ "alg": "EdDSA", "typ": "JWT" }), &as_admin, &key.seed);
    let cases = [
        (
            "forged: another key under the real kid",
            signed_by(&other_key, &as_admin),
            "invalid_token",
        ),
        ("forged: another key under an unknown kid", unknown_kid, "invalid_token"),
        ("forged: the claims changed after signing", tampered, "invalid_token"),
        ("no kid", no_kid, "invalid_token"),
        ("expired", expired, "token_expired"),
        ("alg none", alg_none, "invalid_token"),
        ("alg none, signature kept", alg_none_keeping_signature, "invalid_token"),
        ("alg HS256", alg_hs256, "invalid_token"),
        ("not a JWT", "not-a-jwt".to_owned(), "invalid_token"),
        ("three empty parts", "..".to_owned(), "invalid_token"),
    ];
    for (what, token, code) in &cases {
        for path in ["/users/me", "/users", "/orders"] {
            let reply = api.get(path).token(token).send().await;
            assert_eq!(reply.body["code"], *code, "{what}: {reply:?}");
            reply.problem(401, code);
        }
    }
    api.get("/users/me")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .problem(401, "invalid_token");
    api.get("/users/me")
        .header("authorization", "Bearer ")
        .send()
        .await
        .problem(401, "invalid_token");
    // The genuine session still works after all that.
    api.get("/users/me").token(&user.access).send().await.expect(200);
}

/// A customer's wishlist item, cart line and paid order.
pub struct Belongings {
    pub wish: String,
    pub line: String,
    pub order: String,
    pub item: String,
}

pub async fn belongings(api: &Api, owner: &Session, product: &str) -> Belongings {
    let wish = api
        .post("/wishlist", &json!({ "product_id": product }))
        .token(&owner.access)
        .send()
        .await
        .expect(201);
    let line = api
        .post("/cart/items", &json!({ "product_id": product, "quantity": 2 }))
        .token(&owner.access)
        .send()
        .await
        .expect(201);
    let order = place_order(
        api,
        owner,
        "alice-1",
        &json!({ "items": [{ "product_id": product, "quantity": 1 }] }),
    )
    .await;
    let order_id = order["id"].as_str().unwrap();
    api.wait_for_order(
        &owner.access,
        order_id,
        "paid",
        std::time::Duration::from_secs(30),
        |order| order["status"] == "paid",
    )
    .await;
    Belongings {
        wish: wish["id"].as_str().unwrap().to_owned(),
        line: line["id"].as_str().unwrap().to_owned(),
        order: order_id.to_owned(),
        item: order["items"][0]["id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn other_users_resources_are_404() {
    let stack = Stack::services(&[]).await;
    let api = &stack.api;
    let admin = log_in(api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let product = create_product(api, &admin, "Brass key ring", "Small and shiny", 1_000, 5).await;
    let alice = sign_up(&stack.api, &stack.mail, "alice").await;
    let bob = sign_up(&stack.api, &stack.mail, "bob").await;
    let hers = belongings(api, &alice, &product).await;

    let unknown = uuid::Uuid::new_v4().to_string();
    for id in [hers.wish.as_str(), unknown.as_str()] {
        api.patch(&format!("/wishlist/{id}"), &json!({ "quantity": 5 }))
            .token(&bob.access)
            .send()
            .await
            .problem(404, "not_found");
        api.delete(&format!("/wishlist/{id}"))
            .token(&bob.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    for id in [hers.line.as_str(), unknown.as_str()] {
        api.patch(&format!("/cart/items/{id}"), &json!({ "quantity": 5 }))
            .token(&bob.access)
            .send()
            .await
            .problem(404, "not_found");
        api.delete(&format!("/cart/items/{id}"))
            .token(&bob.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    for id in [hers.order.as_str(), unknown.as_str()] {
        api.get(&format!("/orders/{id}"))
            .token(&bob.access)
            .send()
            .await
            .problem(404, "not_found");
        api.call(Method::POST, &format!("/orders/{id}/cancel"))
            .token(&bob.access)
            .send()
            .await
            .problem(404, "not_found");
        api.call(Method::POST, &format!("/orders/{id}/items/{}/return", hers.item))
            .token(&bob.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    // Bob's own lists hold nothing of Alice's; filtering by her id is for admins only.
    let wishlist = api.get("/wishlist").token(&bob.access).send().await.expect(200);
    assert_eq!(wishlist["items"], json!([]));
    let cart = api.get("/cart").token(&bob.access).send().await.expect(200);
    assert_eq!(cart["items"], json!([]));
    let orders = api.get("/orders").token(&bob.access).send().await.expect(200);
    assert_eq!(orders["items"], json!([]));
    api.get(&format!("/orders?user_id={}", alice.user_id))
        .token(&bob.access)
        .send()
        .await
        .problem(403, "forbidden");
    // Placing with Alice's idempotency key places Bob's own order, not a view of hers.
    let own = place_order(
        api,
        &bob,
        "alice-1",
        &json!({ "items": [{ "product_id": product, "quantity": 1 }] }),
    )
    .await;
    assert_ne!(own["id"], hers.order.as_str());
    assert_eq!(own["user_id"], bob.user_id.as_str());

    // A customer cannot touch a product that is not theirs.
    api.patch(&format!("/products/{product}"), &json!({ "price": 1 }))
        .token(&bob.access)
        .send()
        .await
        .problem(403, "forbidden");
    api.put(&format!("/products/{product}/stock"), &json!({ "stock": 0 }))
        .token(&bob.access)
        .send()
        .await
        .problem(403, "forbidden");
    api.delete(&format!("/products/{product}"))
        .token(&bob.access)
        .send()
        .await
        .problem(403, "forbidden");

    // Alice's things are as she left them.
    let wishlist = api.get("/wishlist").token(&alice.access).send().await.expect(200);
    assert_eq!(wishlist["items"][0]["id"], hers.wish.as_str());
    assert_eq!(wishlist["items"][0]["quantity"], 1);
    let cart = api.get("/cart").token(&alice.access).send().await.expect(200);
    assert_eq!(cart["items"][0]["id"], hers.line.as_str());
    assert_eq!(cart["items"][0]["quantity"], 2);
    let order = api
        .get(&format!("/orders/{}", hers.order))
        .token(&alice.access)
        .send()
        .await
        .expect(200);
    // Paid, or further along if the shipment delays passed meanwhile; never cancelled.
    assert!(
        ["paid", "shipped", "delivered"].contains(&order["status"].as_str().unwrap_or_default()),
        "{order}"
    );
    assert_eq!(order["payment"]["refunded"], 0);
    // The admin sees every order.
    let seen = api
        .get(&format!("/orders/{}", hers.order))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    assert_eq!(seen["user_id"], alice.user_id.as_str());
    let product_now = api.get(&format!("/products/{product}")).send().await.expect(200);
    assert_eq!(product_now["price"], 1_000);
}

/// A request that must be refused with a 4xx problem+json.
struct Bad<'a> {
    token: Option<&'a str>,
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    /// The status and code the contract names, if it names them; else any 4xx will do.
    expected: Option<(u16, &'static str)>,
}

/// `method path` with a JSON `body`, by the holder of `token`.
fn bad<'a>(token: Option<&'a str>, method: Method, path: &str, body: impl Into<Vec<u8>>) -> Bad<'a> {
    Bad {
        token,
        method,
        path: path.to_owned(),
        content_type: "application/json",
        body: body.into(),
        expected: None,
    }
}

impl Bad<'_> {
    /// Expects exactly this status and code.
    fn is(mut self, status: u16, code: &'static str) -> Self {
        self.expected = Some((status, code));
        self
    }

    /// Sent with another content type.
    fn typed(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    /// Sends it and checks the refusal.
    async fn check(self, api: &Api) {
        let mut call = api.call(self.method, &self.path).raw(self.content_type, self.body);
        if let Some(token) = self.token {
            call = call.token(token);
        }
        if self.path == "/orders" {
            call = call.header("idempotency-key", &uuid::Uuid::new_v4().to_string());
        }
        let reply = call.send().await;
        let (status, code) = reply.client_error();
        if let Some((want_status, want_code)) = self.expected {
            assert_eq!((status, code.as_str()), (want_status, want_code), "{reply:?}");
        }
    }
}

#[tokio::test]
async fn bad_input_is_a_4xx_problem_never_a_5xx() {
    let stack = Stack::services(&[]).await;
    let api = &stack.api;
    let admin = log_in(api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let product = create_product(api, &admin, "Paper notebook", "A5, dotted", 3_000, 7).await;
    let user = sign_up(&stack.api, &stack.mail, "fuzzer").await;
    let line = api
        .post("/cart/items", &json!({ "product_id": product, "quantity": 1 }))
        .token(&user.access)
        .send()
        .await
        .expect(201);
    let line = line["id"].as_str().unwrap().to_owned();
    let wish = api
        .post("/wishlist", &json!({ "product_id": product }))
        .token(&user.access)
        .send()
        .await
        .expect(201);
    let wish = wish["id"].as_str().unwrap().to_owned();

    let (u, a) = (Some(user.access.as_str()), Some(admin.access.as_str()));
    let big = "x".repeat(100 * 1024);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (post, put, patch) = (Method::POST, Method::PUT, Method::PATCH);
    let cart_line = format!("/cart/items/{line}");
    let stock = format!("/products/{product}/stock");
    let role = format!("/users/{}/role", user.user_id);
    let quantity = |quantity: &str| format!(r#"{{"product_id": "{product}", "quantity": {quantity}}}"#);
    let cases = [
        // Malformed JSON.
        bad(None, post.clone(), "/auth/login", r#"{"email": "#).is(400, "malformed_json"),
        bad(
            None,
            post.clone(),
            "/auth/login",
            r#"{"email":"a@example.com","password":"x"} and more"#,
        )
        .is(400, "malformed_json"),
        bad(u, post.clone(), "/cart/items", "{product_id: 1}").is(400, "malformed_json"),
        bad(u, post.clone(), "/orders", b"\xff\xfe{}"),
        bad(None, post.clone(), "/auth/email-verifications", deep.as_str()),
        bad(None, post.clone(), "/auth/email-verifications", ""),
        // Wrong types and missing fields.
        bad(None, post.clone(), "/auth/email-verifications", r#"{"email": 123}"#).is(400, "invalid_argument"),
        bad(None, post.clone(), "/auth/email-verifications", r#""a@example.com""#).is(400, "invalid_argument"),
        bad(
            None,
            post.clone(),
            "/auth/email-verifications",
            r#"{"email": "not an address"}"#,
        )
        .is(400, "invalid_argument"),
        bad(None, post.clone(), "/users", r#"{"email": "a@example.com"}"#).is(400, "invalid_argument"),
        bad(
            u,
            post.clone(),
            "/cart/items",
            r#"{"product_id": 42, "quantity": "two"}"#,
        )
        .is(400, "invalid_argument"),
        bad(u, post.clone(), "/cart/items", quantity("1.5")).is(400, "invalid_argument"),
        bad(u, post.clone(), "/orders", r#"{"items": "everything"}"#).is(400, "invalid_argument"),
        bad(u, post.clone(), "/orders", r#"{"items": []}"#).is(400, "invalid_argument"),
        bad(u, post.clone(), "/orders", r#"{"from_cart": "yes"}"#).is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": "12900", "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": 12.5, "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": 9223372036854775808, "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "", "description": "", "price": 1, "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": 1, "currency": "won", "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(a, put.clone(), &role, r#"{"role": "superuser"}"#).is(400, "invalid_argument"),
        // Negative and zero quantities, negative money and stock.
        bad(u, post.clone(), "/cart/items", quantity("-1")).is(400, "invalid_argument"),
        bad(u, post.clone(), "/cart/items", quantity("0")).is(400, "invalid_argument"),
        bad(u, post.clone(), "/cart/items", quantity("4294967296")).is(400, "invalid_argument"),
        bad(u, patch.clone(), &cart_line, r#"{"quantity": -3}"#).is(400, "invalid_argument"),
        bad(u, patch.clone(), &cart_line, r#"{"quantity": 0}"#).is(400, "invalid_argument"),
        bad(u, patch.clone(), &format!("/wishlist/{wish}"), r#"{"quantity": -1}"#).is(400, "invalid_argument"),
        bad(u, post.clone(), "/wishlist", quantity("-2")).is(400, "invalid_argument"),
        bad(
            u,
            post.clone(),
            "/orders",
            format!(r#"{{"items": [{}]}}"#, quantity("-5")),
        )
        .is(400, "invalid_argument"),
        bad(a, put.clone(), &stock, r#"{"stock": -1}"#).is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": -100, "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": 100, "stock": -1}"#,
        )
        .is(400, "invalid_argument"),
        bad(a, patch.clone(), &format!("/products/{product}"), r#"{"price": -1}"#).is(400, "invalid_argument"),
        // Amounts past the documented maxima (prices 10^12, stock 10^9): totals built from them
        // would overflow 64 bits.
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": 4611686018427387904, "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "", "price": 1, "stock": 9223372036854775807}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            patch.clone(),
            &format!("/products/{product}"),
            r#"{"price": 9223372036854775807}"#,
        )
        .is(400, "invalid_argument"),
        bad(a, put.clone(), &stock, r#"{"stock": 9223372036854775000}"#).is(400, "invalid_argument"),
        // NUL and other control characters (PostgreSQL cannot store NUL in text).
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pe\u0000n", "description": "", "price": 1, "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            post.clone(),
            "/products",
            r#"{"name": "Pen", "description": "a\u0000b", "price": 1, "stock": 1}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            patch.clone(),
            &format!("/products/{product}"),
            r#"{"description": "dotted\u0000"}"#,
        )
        .is(400, "invalid_argument"),
        bad(
            a,
            patch.clone(),
            &format!("/products/{product}"),
            r#"{"name": "Paper\u001bnotebook"}"#,
        )
        .is(400, "invalid_argument"),
        bad(u, patch.clone(), "/users/me", r#"{"name": "Kim\u0000"}"#).is(400, "invalid_argument"),
        // Oversize bodies.
        bad(
            None,
            post.clone(),
            "/auth/email-verifications",
            format!(r#"{{"email": "{big}@example.com"}}"#),
        )
        .is(413, "body_too_large"),
        bad(
            a,
            post.clone(),
            "/products",
            format!(r#"{{"name": "Pen", "description": "{big}", "price": 1, "stock": 1}}"#),
        )
        .is(413, "body_too_large"),
        bad(
            u,
            post.clone(),
            "/auth/logout",
            format!(r#"{{"refresh_token": "{big}"}}"#),
        )
        .is(413, "body_too_large"),
        // Not JSON at all.
        bad(None, post.clone(), "/auth/login", "email=a@example.com&password=x")
            .typed("text/plain")
            .is(415, "unsupported_media_type"),
        bad(u, post, "/cart/items", "product_id=1&quantity=1")
            .typed("application/x-www-form-urlencoded")
            .is(415, "unsupported_media_type"),
    ];
    for case in cases {
        case.check(api).await;
    }

    // Bad query strings, paths, methods and headers.
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "min_price=-5",
        "min_price=10&max_price=5",
        "max_price=99999999999999999999",
        "in_stock=maybe",
        "cursor=not-a-cursor",
        "seller_id=nobody",
        "q=a%00b",
        "q=a%1Bb",
    ] {
        let reply = api.get(&format!("/products?{query}")).send().await;
        assert_eq!(reply.client_error().0, 400, "{query}: {reply:?}");
    }
    api.get("/products/not-a-uuid").send().await.problem(400, "invalid_id");
    api.get("/orders/123")
        .token(&user.access)
        .send()
        .await
        .problem(400, "invalid_id");
    api.get("/no-such-route").send().await.problem(404, "not_found");
    api.call(Method::PUT, "/auth/login")
        .send()
        .await
        .problem(405, "method_not_allowed");
    let order = json!({ "items": [{ "product_id": product, "quantity": 1 }] });
    api.post("/orders", &order)
        .token(&user.access)
        .send()
        .await
        .problem(400, "missing_idempotency_key");
    api.post("/orders", &order)
        .token(&user.access)
        .header("idempotency-key", &"k".repeat(300))
        .send()
        .await
        .client_error();
    api.post(
        "/orders",
        &json!({ "items": [{ "product_id": uuid::Uuid::new_v4(), "quantity": 1 }] }),
    )
    .token(&user.access)
    .header("idempotency-key", "unknown-product")
    .send()
    .await
    .client_error();

    // None of it changed anything, and the stack still serves.
    assert_eq!(api.stock(&product).await, 7);
    let cart = api.get("/cart").token(&user.access).send().await.expect(200);
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    assert_eq!(cart["items"][0]["quantity"], 1);
    let orders = api.get("/orders").token(&user.access).send().await.expect(200);
    assert_eq!(orders["items"], json!([]));
    let product_now = api.get(&format!("/products/{product}")).send().await.expect(200);
    assert_eq!(
        (product_now["price"].as_i64(), product_now["stock"].as_i64()),
        (Some(3_000), Some(7))
    );
    assert_eq!(
        (product_now["name"].as_str(), product_now["description"].as_str()),
        (Some("Paper notebook"), Some("A5, dotted"))
    );
    api.at(Method::GET, "/readyz").send().await.expect(200);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_across_replicas() {
    const LIMIT: usize = 20;
    let limit = LIMIT.to_string();
    let mut stack = Stack::services(&[("SHOP_RATE_LIMIT_PER_IP", &limit)]).await;
    // A second gateway replica with the same Redis prefix: the limit is for both together.
    let replica = stack.start_gateway(&[("SHOP_RATE_LIMIT_PER_IP", &limit)]).await;
    let gateways = [stack.api.clone(), replica];

    // The user service's own limit: one code per address per resend interval.
    let email = crate::journey::unique_email("impatient");
    let body = json!({ "email": email });
    gateways[0]
        .post("/auth/email-verifications", &body)
        .send()
        .await
        .expect(202);
    let again = gateways[1].post("/auth/email-verifications", &body).send().await;
    again.problem(429, "too_many_requests");
    let retry_after: u64 = again.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The gateways' per-IP limit, counted in Redis across both replicas.
    for n in 2..LIMIT {
        gateways[n % 2].get("/products").send().await.expect(200);
    }
    for gateway in &gateways {
        let refused = gateway.get("/products").send().await;
        refused.problem(429, "too_many_requests");
        let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(refused.header("x-request-id").is_some());
        // Probes are not API traffic and stay answered.
        gateway.at(Method::GET, "/healthz").send().await.expect(200);
        gateway.at(Method::GET, "/readyz").send().await.expect(200);
    }
}
