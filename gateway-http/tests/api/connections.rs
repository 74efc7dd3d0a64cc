//! The gateway served on a real socket, as in production: what happens on the connection
//! before any route runs (Host rules, timeouts, connection and request caps, early refusals).

use std::time::Duration;

use crate::helpers::{Served, status_of};

#[tokio::test]
async fn a_request_without_exactly_one_host_is_400() {
    let gateway = Served::start(|_| {}).await;
    let within = Duration::from_secs(5);
    let one = gateway
        .exchange(
            b"GET /healthz HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
            within,
        )
        .await;
    assert_eq!(status_of(&one), 200, "{one}");
    let none = gateway
        .exchange(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", within)
        .await;
    assert_eq!(status_of(&none), 400, "{none}");
    assert!(none.contains("invalid_host"), "{none}");
    let two = gateway
        .exchange(
            b"GET /healthz HTTP/1.1\r\nHost: shop.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
            within,
        )
        .await;
    assert_eq!(status_of(&two), 400, "{two}");
    // HTTP/1.0 predates Host: a request without one is still served.
    let old = gateway.exchange(b"GET /healthz HTTP/1.0\r\n\r\n", within).await;
    assert!(old.starts_with("HTTP/1.") && old.contains(" 200 "), "{old}");
}
