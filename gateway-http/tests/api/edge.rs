//! What the edge decides by itself, with every service unreachable: bad input is a 400
//! problem+json (never 422 or 500), missing and bad tokens are 401, oversize bodies 413,
//! unknown routes 404.

use axum::http::{Method, StatusCode, header};
use serde_json::json;

use crate::helpers::{TestApp, raw_json, request};

/// A token with `alg: none` and no signature, naming an admin.
const ALG_NONE_TOKEN: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoidGVzdC1rZXkifQ.\
    eyJzdWIiOiI2ZjFkN2MyZS00YjdhLTRmMGUtOWE1NS0wZDFjMmIzYTRmNWUiLCJyb2xlIjoiYWRtaW4iLCJqdGkiOiJmb3JnZWQiLCJleHAiOjQxMDI0NDQ4MDB9.";

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::without_services().await;
    let reply = app
        .send(raw_json(
            Method::POST,
            "/auth/login",
            None,
            r#"{"email": "a@b.c", "password": "#,
        ))
        .await;
    reply.assert_problem(StatusCode::BAD_REQUEST, "malformed_json");
    assert!(reply.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn missing_and_ill_typed_fields_are_400() {
    let app = TestApp::without_services().await;
    for body in [
        json!({"email": "a@example.com"}),
        json!({"email": "a@example.com", "password": 12345678}),
        json!({"email": null, "password": "x"}),
        json!([1, 2, 3]),
        // An array with the right number of strings would fill the struct field by field.
        json!(["a@example.com", "Quick-start-1"]),
        json!("a@example.com"),
    ] {
        let reply = app.post("/auth/login", None, body.clone()).await;
        reply.assert_problem(StatusCode::BAD_REQUEST, "invalid_argument");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused() {
    let app = TestApp::without_services().await;
    let request = axum::http::Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(axum::body::Body::from("email=a"))
        .unwrap();
    app.send(request)
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let app = TestApp::without_services().await;
    let big = format!(
        r#"{{"email": "a@example.com", "password": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let reply = app.send(raw_json(Method::POST, "/auth/login", None, big)).await;
    reply.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
}

#[tokio::test]
async fn protected_routes_without_a_token_are_401_missing_token() {
    let app = TestApp::without_services().await;
    for (method, path) in [
        (Method::GET, "/users/me"),
        (Method::GET, "/wishlist"),
        (Method::GET, "/cart"),
        (Method::GET, "/orders"),
        (Method::POST, "/auth/logout"),
    ] {
        let reply = app.call(method, path, None, None).await;
        reply.assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
    }
}

#[tokio::test]
async fn garbage_and_unsigned_tokens_are_401() {
    let app = TestApp::without_services().await;
    for token in ["garbage", "a.b.c", ALG_NONE_TOKEN] {
        let reply = app.get("/users/me", Some(token)).await;
        reply.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let request = axum::http::Request::get("/api/v1/users/me")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(axum::body::Body::empty())
        .unwrap();
    app.send(request)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn unknown_routes_are_404_problems_and_wrong_methods_405() {
    let app = TestApp::without_services().await;
    app.get("/no-such-thing", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    app.call(Method::PUT, "/auth/login", None, None)
        .await
        .assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn ids_that_are_not_uuids_are_400() {
    let app = TestApp::without_services().await;
    app.get("/products/not-a-uuid", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_id");
    app.get("/products/123/stock", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_id");
}

#[tokio::test]
async fn list_limits_outside_one_to_a_hundred_are_400() {
    let app = TestApp::without_services().await;
    for query in ["limit=0", "limit=101", "limit=-1", "limit=ten"] {
        let reply = app.get(&format!("/products?{query}"), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {reply:?}");
    }
    app.get("/products?min_price=cheap", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn client_sent_identity_headers_do_not_authenticate() {
    let app = TestApp::without_services().await;
    let request = axum::http::Request::get("/api/v1/users/me")
        .header("x-shop-user-id", "6f1d7c2e-4b7a-4f0e-9a55-0d1c2b3a4f5e")
        .header("x-shop-user-role", "admin")
        .body(axum::body::Body::empty())
        .unwrap();
    app.send(request)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
}

#[tokio::test]
async fn request_ids_are_echoed() {
    let app = TestApp::without_services().await;
    let mut request = request(Method::GET, "/users/me", None, None);
    request
        .headers_mut()
        .insert("x-request-id", "req-1234".parse().unwrap());
    let reply = app.send(request).await;
    assert_eq!(reply.headers["x-request-id"], "req-1234");
}

#[tokio::test]
async fn responses_are_compressed_for_clients_that_accept_it() {
    let app = TestApp::without_services().await;
    let request = || axum::http::Request::get("/openapi.json");
    let plain = app.send(request().body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(!plain.headers.contains_key(header::CONTENT_ENCODING));
    let gzipped = app
        .send(
            request()
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(gzipped.headers[header::CONTENT_ENCODING], "gzip");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::configured_without_services(|config| {
        config.cors_origins = vec!["https://shop.example.com".to_owned()];
    })
    .await;
    let preflight = |origin: &str| {
        axum::http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/products")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let allowed = app.send(preflight("https://shop.example.com")).await;
    assert_eq!(
        allowed.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://shop.example.com"
    );
    let other = app.send(preflight("https://evil.example.net")).await;
    assert!(!other.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn the_cors_preflight_allows_what_browser_clients_send_and_read() {
    let app = TestApp::configured_without_services(|config| {
        config.cors_origins = vec!["https://shop.example".to_owned()];
    })
    .await;
    let preflight = axum::http::Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/orders")
        .header(header::ORIGIN, "https://shop.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type,idempotency-key,x-request-id",
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = app.send(preflight).await;
    assert!(reply.status.is_success(), "{reply:?}");
    let allowed = reply.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["authorization", "content-type", "idempotency-key", "x-request-id"] {
        assert!(allowed.contains(name), "{name} not allowed: {allowed}");
    }

    let request = axum::http::Request::get("/api/v1/no-such-thing")
        .header(header::ORIGIN, "https://shop.example")
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = app.send(request).await;
    let exposed = reply.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["location", "x-request-id", "retry-after"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}

#[tokio::test]
async fn a_request_id_is_kept_only_when_short_and_printable() {
    let app = TestApp::without_services().await;
    let echo = |ids: Vec<axum::http::HeaderValue>| {
        let app = &app;
        async move {
            let mut request = axum::http::Request::get("/api/v1/no-such-thing")
                .body(axum::body::Body::empty())
                .unwrap();
            for id in ids {
                request.headers_mut().append("x-request-id", id);
            }
            let reply = app.send(request).await;
            let ids: Vec<_> = reply.headers.get_all("x-request-id").iter().cloned().collect();
            assert_eq!(ids.len(), 1, "{reply:?}");
            ids[0].to_str().unwrap().to_owned()
        }
    };
    let value = |raw: &[u8]| axum::http::HeaderValue::from_bytes(raw).unwrap();
    assert_eq!(echo(vec![value(b"req-42")]).await, "req-42");
    let longest = "a".repeat(128);
    assert_eq!(echo(vec![value(longest.as_bytes())]).await, longest);
    for refused in [
        vec![value("a".repeat(129).as_bytes())],
        vec![value("b".repeat(8_000).as_bytes())],
        vec![value(b"two words")],
        vec![value(b"caf\xc3\xa9")],
        vec![value(b"tab\there")],
        vec![value(b"one"), value(b"two")],
    ] {
        let sent: Vec<_> = refused.iter().map(|v| v.as_bytes().to_vec()).collect();
        let got = echo(refused).await;
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "{sent:?} was replaced by {got:?}");
    }
}
