//! The REST edge of shop: the only public door. It serves `/api/v1/...` (API.md) by calling the
//! services over balanced gRPC channels, and answers `/healthz` (the process lives) and
//! `/readyz` (every downstream service answers its gRPC health check) for Kubernetes probes.

pub mod config;
mod health;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::Router;
use http::{HeaderName, Request};
use shop_platform::grpc::client::{self, GrpcChannel};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use config::GatewayConfig;

/// The gRPC channels to the services.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// The user service.
    pub user: GrpcChannel,
    /// The catalog service.
    pub catalog: GrpcChannel,
    /// The order service.
    pub order: GrpcChannel,
}

impl Upstreams {
    /// Connects (lazily: no call is made yet) to every service the configuration names.
    pub async fn connect(config: &GatewayConfig) -> anyhow::Result<Self> {
        let options = &config.client;
        Ok(Self {
            user: client::connect(&config.user, options)
                .await
                .context("user service target")?,
            catalog: client::connect(&config.catalog, options)
                .await
                .context("catalog service target")?,
            order: client::connect(&config.order, options)
                .await
                .context("order service target")?,
        })
    }
}

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The service channels.
    pub upstreams: Arc<Upstreams>,
    /// How long `/readyz` waits for each service.
    pub readiness_timeout: Duration,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The gateway's router, with its middleware.
pub fn app(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        let span = tracing::info_span!(
            "http.server",
            otel.kind = "server",
            http.method = %request.method(),
            http.target = %request.uri().path(),
            request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or(""),
        );
        let parent = shop_platform::telemetry::propagation::extract_http(request.headers());
        shop_platform::telemetry::propagation::set_remote_parent(&span, parent);
        span
    });
    health::routes()
        .with_state(state)
        // Outermost first: give the request an id, trace with it, echo it on the response.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The gateway, bound and ready to serve.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    router: Router,
}

impl Gateway {
    /// Connects the upstream channels and binds the HTTP listener.
    pub async fn build(config: &GatewayConfig) -> anyhow::Result<Self> {
        let upstreams = Arc::new(Upstreams::connect(config).await?);
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", config.http_addr))?;
        let state = AppState {
            upstreams,
            readiness_timeout: config.readiness_timeout,
        };
        Ok(Self {
            listener,
            router: app(state),
        })
    }

    /// Where the gateway listens.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests and returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving HTTP")
    }
}
