//! The gateway served on a real socket, as in production: what happens on the connection
//! before any route runs (Host rules, timeouts, connection and request caps, early refusals).

use std::time::Duration;

use shop_platform::testing::{self, metrics::Scraper};

use crate::helpers::{Served, status_of, unreachable};

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

/// The status of a `GET /api/v1/products` on a fresh connection, with `headers` added.
async fn products_status(gateway: &Served, headers: &str) -> u16 {
    let raw = format!("GET /api/v1/products HTTP/1.1\r\nHost: shop.test\r\n{headers}Connection: close\r\n\r\n");
    status_of(&gateway.exchange(raw.as_bytes(), Duration::from_secs(5)).await)
}

#[tokio::test]
async fn the_client_ip_header_is_believed_only_from_trusted_proxies() {
    // Nothing trusted (the default, loopback included): the header is the client's own word and
    // is ignored, so changing it does not buy a fresh rate-limit bucket.
    let gateway = Served::start(|config| config.rate_limit_per_ip = 2).await;
    for n in 1..=2 {
        let status = products_status(&gateway, &format!("X-Real-IP: 203.0.113.{n}\r\n")).await;
        assert_ne!(status, 429, "request {n}");
    }
    assert_eq!(products_status(&gateway, "X-Real-IP: 203.0.113.3\r\n").await, 429);

    // Behind a trusted proxy (here the loopback peer), the header names the client: each has
    // its own bucket, and IPv6 clients are counted per /64.
    let gateway = Served::start(|config| {
        config.rate_limit_per_ip = 2;
        config.client_address.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for client in [
        "203.0.113.1",
        "203.0.113.1",
        "203.0.113.2",
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
    ] {
        assert_ne!(
            products_status(&gateway, &format!("X-Real-IP: {client}\r\n")).await,
            429,
            "{client}"
        );
    }
    assert_eq!(products_status(&gateway, "X-Real-IP: 203.0.113.1\r\n").await, 429);
    assert_eq!(
        products_status(&gateway, "X-Real-IP: 2001:db8:1:2:ffff::9\r\n").await,
        429,
        "same /64"
    );
    assert_ne!(products_status(&gateway, "X-Real-IP: 2001:db8:1:3::1\r\n").await, 429);
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let gateway = Served::start(|config| config.body_limit = 4096).await;
    // 100 MB announced, nothing sent: the answer comes at once, not after waiting for the body.
    let started = std::time::Instant::now();
    let reply = gateway
        .exchange(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(status_of(&reply), 413, "{reply}");
    assert!(reply.contains("body_too_large"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_408_not_504() {
    let gateway = Served::start(|config| {
        config.connections.body_timeout = Duration::from_millis(500);
        config.request_timeout = Duration::from_secs(5);
    })
    .await;
    // 100 bytes announced, 10 sent, then nothing: the client's fault, answered as such well
    // before the request timeout, and the connection is closed (the rest is never read).
    let started = std::time::Instant::now();
    let reply = gateway
        .exchange(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(status_of(&reply), 408, "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("connection: close"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn slow_or_silent_clients_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let header_timeout = Duration::from_millis(800);
    let gateway = Served::start(|config| config.connections.header_timeout = header_timeout).await;
    let started = std::time::Instant::now();
    // Silent: connects and sends nothing. Slow loris: one header byte every 100 ms, forever.
    let mut silent = gateway.connect().await;
    let mut loris = gateway.connect().await;
    let drip = async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: shop.test\r\nX-Padding: "
            .iter()
            .cycle()
        {
            if loris.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut buffer = [0u8; 256];
    let (silent_closed, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(silent.read(&mut buffer), drip)
    })
    .await
    .expect("both connections are closed by the gateway, not left open");
    assert!(matches!(silent_closed, Ok(0) | Err(_)), "{silent_closed:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= header_timeout, "closed before the timeout: {elapsed:?}");
    assert!(elapsed < header_timeout * 4, "{elapsed:?}");
    // Meanwhile and after, a real client is served.
    let reply = gateway
        .exchange(
            b"GET /healthz HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(status_of(&reply), 200, "{reply}");
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_for_a_slot_instead_of_failing() {
    let gateway = Served::start(|config| {
        config.connections.max_connections = 4;
        config.connections.header_timeout = Duration::from_millis(700);
    })
    .await;
    // Four idle connections take every slot: a fifth client is not accepted (no descriptor is
    // spent on it) until the header timeout frees a slot, and is then served.
    let idle: Vec<_> = futures::future::join_all((0..4).map(|_| gateway.connect())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let reply = gateway
        .exchange(
            b"GET /healthz HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "served without waiting for a slot: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    drop(idle);
}

#[tokio::test]
async fn a_connection_is_closed_after_its_request_quota() {
    let gateway = Served::start(|config| config.connections.max_requests_per_connection = 3).await;
    // Five pipelined requests on one connection: three are answered, the third with
    // `Connection: close`, then the gateway closes the connection.
    let request = "GET /healthz HTTP/1.1\r\nHost: shop.test\r\n\r\n".repeat(5);
    let mut stream = gateway.connect().await;
    let reply = crate::helpers::exchange_on(&mut stream, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(reply.matches("HTTP/1.1 200").count(), 3, "{reply}");
    assert_eq!(
        reply.to_ascii_lowercase().matches("connection: close").count(),
        1,
        "{reply}"
    );
}

#[tokio::test]
async fn refusals_are_counted_by_limit_and_the_gateway_reports_serving() {
    let metrics = Scraper::install();
    // The limits counted in Redis, as in production, under a prefix of the test's own.
    let prefix = format!("{}:", testing::unique_name("gateway_metrics"));
    let cache = shop_platform::cache::from_url(&testing::redis_url(), &prefix)
        .await
        .unwrap();
    let gateway = Served::start_on(cache, unreachable(), |config| config.rate_limit_per_ip = 1).await;
    let serving = ["shop_service=\"gateway\""];
    metrics
        .wait_for("shop_service_serving", &serving, |value| value == 1.0)
        .await;
    // Every limit is there from the start, at 0, so that the first refusal is an increase.
    for limit in ["ip", "user", "service"] {
        let label = format!("shop_rate_limit=\"{limit}\"");
        assert_eq!(
            metrics.value("shop_rate_limit_rejections_total", &[&label]).await,
            Some(0.0),
            "{limit}"
        );
    }

    assert_ne!(products_status(&gateway, "").await, 429);
    assert_eq!(products_status(&gateway, "").await, 429);
    assert_eq!(products_status(&gateway, "").await, 429);
    let ip = ["shop_rate_limit=\"ip\""];
    assert_eq!(metrics.value("shop_rate_limit_rejections_total", &ip).await, Some(2.0));
    let user = ["shop_rate_limit=\"user\""];
    assert_eq!(
        metrics.value("shop_rate_limit_rejections_total", &user).await,
        Some(0.0)
    );

    drop(gateway);
    metrics
        .wait_for("shop_service_serving", &serving, |value| value == 0.0)
        .await;
}
