//! The REST edge of shop: the only public door. It serves `/api/v1/...` (docs/api.md) by calling the
//! services over balanced gRPC channels with deadlines, verifies access tokens offline,
//! limits rates per client and per user across replicas, answers every error as
//! problem+json, publishes its OpenAPI document at `/openapi.json` and `/openapi.yaml` with an
//! interactive reference at `/docs` (served from the binary, no network), and answers `/healthz`
//! (the process lives) and `/readyz` (the gateway can serve; each service's state is reported,
//! none of them gates it) for Kubernetes.

pub mod auth;
pub mod config;
mod docs;
mod dto;
mod edge;
pub mod extract;
mod fixed;
mod health;
pub mod limits;
mod openapi;
pub mod problem;
pub mod read_cache;
mod routes;
pub mod serve;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Request, Response, StatusCode},
    middleware,
    routing::get,
};
use shop_platform::{
    cache::Cache,
    grpc::{
        client::{self, GrpcChannel},
        mesh::{CATALOG, ORDER, USER},
    },
    telemetry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

pub use config::GatewayConfig;

/// The header `POST /orders` requires.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

use crate::{auth::Authenticator, limits::RateLimits, problem::ApiError, read_cache::ReadCache};

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
        let mesh = &config.mesh;
        Ok(Self {
            user: client::connect(&config.user, options)
                .await
                .context("user service target")?
                .signed_by(mesh, USER),
            catalog: client::connect(&config.catalog, options)
                .await
                .context("catalog service target")?
                .signed_by(mesh, CATALOG),
            order: client::connect(&config.order, options)
                .await
                .context("order service target")?
                .signed_by(mesh, ORDER),
        })
    }
}

/// What every handler can reach: one shared allocation, so the handlers and middleware that
/// take the state (several per request) cost one reference count each, not one per part.
#[derive(Clone, Debug)]
pub struct AppState(Arc<SharedState>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct SharedState {
    /// The service channels.
    pub upstreams: Upstreams,
    /// Access-token verification.
    pub auth: Authenticator,
    /// Rate limits.
    pub limits: RateLimits,
    /// The public catalog reads kept for a moment.
    pub reads: ReadCache,
    /// How long `/readyz` waits for each service.
    pub readiness_timeout: Duration,
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

impl AppState {
    /// The state for `config`, over `upstreams`, counting rate limits in `cache`.
    pub fn new(config: &GatewayConfig, upstreams: Upstreams, cache: Arc<dyn Cache>) -> Self {
        let auth = Authenticator::new(upstreams.user.clone(), config.key_refresh_interval);
        let limits = RateLimits::new(
            cache,
            config.rate_limit_per_ip,
            config.rate_limit_per_user,
            config.rate_limit_view_max_age,
            config.client_address.clone(),
        );
        Self(Arc::new(SharedState {
            upstreams,
            auth,
            limits,
            reads: ReadCache::new(config.edge_cache_ttl, config.edge_cache_entries),
            readiness_timeout: config.readiness_timeout,
        }))
    }
}

use edge::REQUEST_ID;

/// The gateway's router with its whole middleware stack.
pub fn app(state: AppState, config: &GatewayConfig) -> Router {
    let body_limit = config.body_limit;
    let body_timeout = config.connections.body_timeout;
    let api = routes::api_routes().layer(middleware::from_fn_with_state(state.clone(), limits::limit_by_ip));
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok());
            telemetry::http::server_span(request, request_id.unwrap_or(""))
        })
        .on_response(|response: &Response<_>, _: Duration, span: &tracing::Span| {
            telemetry::http::record_response(span, response.status());
        });
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|origin| origin.parse().ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(tower_http::cors::Any)
        // Every header a browser client must send (POST /orders needs an Idempotency-Key) or
        // read (Location of a created resource, the request id, Retry-After of a 429 or 503).
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            IDEMPOTENCY_KEY,
            REQUEST_ID,
        ])
        .expose_headers([
            axum::http::header::LOCATION,
            REQUEST_ID,
            axum::http::header::RETRY_AFTER,
        ]);

    Router::new()
        .merge(health::routes())
        .route("/openapi.json", get(openapi::json))
        .route("/openapi.yaml", get(openapi::yaml))
        .merge(docs::routes())
        .nest("/api/v1", api)
        .route_layer(middleware::from_fn(edge::name_span_after_route))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
        // Outermost first: id the request (a client's id only when acceptable), trace it, echo
        // the id, then the edge rules.
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(edge::sanitize_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(trace)
                .layer(middleware::from_fn(edge::measure))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(cors)
                .layer(CompressionLayer::new())
                .layer(middleware::from_fn(edge::errors_as_problems))
                .layer(middleware::from_fn(move |request, next| {
                    edge::check_headers(body_limit, request, next)
                }))
                .layer(middleware::from_fn(move |request, next| {
                    edge::read_body_within(body_timeout, body_limit, request, next)
                }))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    config.request_timeout,
                ))
                // Bodies are read only through extractors, which enforce this limit (413).
                .layer(DefaultBodyLimit::max(config.body_limit)),
        )
}

/// The gateway, bound and ready to serve.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    router: Router,
    connections: serve::ConnectionLimits,
}

impl Gateway {
    /// Connects the upstream channels and binds the HTTP listener; rate limits count in `cache`.
    pub async fn build(config: &GatewayConfig, cache: Arc<dyn Cache>) -> anyhow::Result<Self> {
        // Built once, here, so a broken document stops the start instead of failing requests.
        openapi::documents()?;
        let upstreams = Upstreams::connect(config).await?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", config.http_addr))?;
        let router = app(AppState::new(config, upstreams, cache), config);
        Ok(Self {
            listener,
            router,
            connections: config.connections,
        })
    }

    /// Where the gateway listens.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests and returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // The gateway serves whenever it answers (see `health`): 1 from now until it drains.
        shop_platform::health::report_serving("gateway", true);
        let serving = serve::serve(self.listener, self.router, self.connections, shutdown.clone());
        let draining = async {
            shutdown.cancelled().await;
            shop_platform::health::report_serving("gateway", false);
        };
        tokio::pin!(serving, draining);
        let served = tokio::select! {
            served = &mut serving => served,
            () = &mut draining => serving.await,
        }
        .context("serving HTTP");
        shop_platform::health::report_serving("gateway", false);
        served
    }
}
