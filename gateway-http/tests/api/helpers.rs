//! A gateway router over chosen upstreams, and typed helpers to drive it.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use serde_json::Value;
use shop_gateway::{AppState, Gateway, GatewayConfig, Upstreams, app, problem::PROBLEM_JSON};
use shop_platform::{cache::MemoryCache, grpc::client::Target};
use tower::ServiceExt as _;

/// The address every test request comes from.
pub const CLIENT_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 40_000);

/// A gateway router under test.
pub struct TestApp {
    router: Router,
}

/// A reply, its body parsed as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The problem's machine code.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Asserts the reply is a problem+json with `status` and `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.headers[header::CONTENT_TYPE], PROBLEM_JSON, "{self:?}");
        assert_eq!(self.code(), code, "{self:?}");
        assert_eq!(self.body["status"], status.as_u16(), "{self:?}");
    }
}

/// A loopback port nothing listens on: calls there are refused.
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

impl TestApp {
    /// A gateway whose services are all unreachable: only what the edge decides can succeed.
    pub async fn without_services() -> Self {
        Self::with_services(SocketAddr::from((Ipv4Addr::LOCALHOST, unused_port()))).await
    }

    /// A gateway whose three services are all served at `addr`.
    pub async fn with_services(addr: SocketAddr) -> Self {
        Self::configured(addr, |_| {}).await
    }

    /// A gateway with unreachable services and `tweak` applied to its configuration.
    pub async fn configured_without_services(tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        Self::configured(SocketAddr::from((Ipv4Addr::LOCALHOST, unused_port())), tweak).await
    }

    /// A gateway whose three services are served at `addr`, with `tweak` applied to its
    /// configuration.
    pub async fn configured(addr: SocketAddr, tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        let mut config = test_config(addr);
        config.body_limit = 4 * 1024;
        tweak(&mut config);
        let upstreams = Upstreams::connect(&config).await.unwrap();
        let cache = Arc::new(MemoryCache::new("gateway-test:"));
        Self {
            router: app(AppState::new(&config, upstreams, cache), &config),
        }
    }

    /// Sends `request` as if from [`CLIENT_ADDR`] (with a `Host`, as every HTTP/1.1 client
    /// sends, unless it has one); the body as bytes, exactly as sent.
    pub async fn send_raw(&self, mut request: Request<Body>) -> (StatusCode, HeaderMap, axum::body::Bytes) {
        request.extensions_mut().insert(ConnectInfo(CLIENT_ADDR));
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, header::HeaderValue::from_static("shop.test"));
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, bytes)
    }

    /// Sends `request` as if from [`CLIENT_ADDR`].
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let (status, headers, bytes) = self.send_raw(request).await;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply { status, headers, body }
    }

    /// `method path` with an optional bearer token and JSON body.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        self.send(request(method, path, token, body)).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }
}

/// A request to `/api/v1` + `path`.
pub fn request(method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(format!("/api/v1{path}"));
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// A request with a raw body sent as JSON.
pub fn raw_json(method: Method, path: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("/api/v1{path}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body.into()).unwrap()
}

/// An address where no service answers.
pub fn unreachable() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, unused_port()))
}

/// A gateway served on a loopback port by [`Gateway::run`], as in production (connection
/// handling, timeouts), with unreachable services unless `services` is given. Stops when the
/// test's runtime ends.
pub struct Served {
    pub addr: SocketAddr,
    _stop: tokio_util::sync::DropGuard,
}

impl Served {
    /// Serves a gateway whose services are unreachable, with `tweak` applied to its configuration.
    pub async fn start(tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        Self::start_with_services(unreachable(), tweak).await
    }

    /// Serves a gateway whose three services are at `services`.
    pub async fn start_with_services(services: SocketAddr, tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        let cache = Arc::new(MemoryCache::new("gateway-test:"));
        Self::start_on(cache, services, tweak).await
    }

    /// Serves a gateway counting its rate limits in `cache`, its three services at `services`.
    pub async fn start_on(
        cache: Arc<dyn shop_platform::cache::Cache>,
        services: SocketAddr,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let mut config = test_config(services);
        tweak(&mut config);
        let gateway = Gateway::build(&config, cache).await.unwrap();
        let addr = gateway.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(gateway.run(stop.clone()));
        Self {
            addr,
            _stop: stop.drop_guard(),
        }
    }

    /// Opens a TCP connection to the gateway.
    pub async fn connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(self.addr).await.unwrap()
    }

    /// Sends `raw` bytes on a fresh connection and reads the reply until the gateway closes the
    /// connection or `within` passes; returns what was read.
    pub async fn exchange(&self, raw: &[u8], within: Duration) -> String {
        let mut stream = self.connect().await;
        exchange_on(&mut stream, raw, within).await
    }
}

/// Writes `raw` on `stream` and reads until the peer closes or `within` passes.
pub async fn exchange_on(stream: &mut tokio::net::TcpStream, raw: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(raw).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

/// The status code of a raw HTTP/1.1 reply (0 when there is none).
pub fn status_of(reply: &str) -> u16 {
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A gateway on a free loopback port whose three services are at `services`, signing as the
/// test mesh's gateway, with timeouts short enough for tests of failures.
fn test_config(services: SocketAddr) -> GatewayConfig {
    let target = Target::parse(&format!("http://{services}")).unwrap();
    let mut config = GatewayConfig::with_targets(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        target.clone(),
        target.clone(),
        target,
    );
    config.client.request_timeout = Duration::from_secs(2);
    config.client.connect_timeout = Duration::from_millis(500);
    config.mesh = crate::fake::gateway_identity();
    config
}
