//! The gRPC server every service runs: its own services plus `grpc.health.v1` health and server
//! reflection, mesh authentication of every call but health (see [`crate::grpc::mesh`]: a call
//! without a valid mesh token is UNAUTHENTICATED, one without a grant PERMISSION_DENIED;
//! reflection needs the `operator` grant), a tracing span per call (`package.Service/Method`, joined to the caller's trace
//! through W3C headers; see [`crate::telemetry::rpc`]), a
//! request timeout, and graceful shutdown: on the shutdown signal every service reports
//! NOT_SERVING, new connections stop, and in-flight calls finish before `serve` returns.
//!
//! Health tells the truth (see [`crate::health`]): the server and its services are SERVING only
//! while the dependencies given to [`GrpcServerBuilder::depends_on`] answer, and calls are
//! answered UNAVAILABLE at once while one that every call needs (the database) is down. The
//! `liveness` service name stays SERVING as long as the process runs.
//! The listener is bound in [`GrpcServerBuilder::bind`], so tests ask for port 0 and read the
//! real port back.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use http::Request;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    server::NamedService,
    service::{Routes, RoutesBuilder},
    transport::Server,
    transport::server::TcpIncoming,
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower_http::{classify::GrpcFailureClass, trace::TraceLayer};

use crate::{
    grpc::{
        error::ERROR_CODE_METADATA,
        identity::UNPROVEN_IDENTITY_METADATA,
        in_process::{self, CallStack},
        mesh::{MeshIdentity, TOKEN_METADATA},
    },
    health::{CallGate, Dependency, DependencyWatcher, HealthSettings, LIVENESS},
    telemetry::rpc,
};

/// How much work a server takes on at once, so a burst is refused quickly rather than queued
/// until every call misses its deadline and the process runs out of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Calls in flight at once, over all connections (`SHOP_GRPC_MAX_CONCURRENT_CALLS`
    /// [1024]). A call beyond it is refused at once with UNAVAILABLE (machine code
    /// `overloaded`), which callers retry on another replica or after a pause. Health checks
    /// and reflection are not counted: a busy server is not a dead one.
    pub max_concurrent_calls: usize,
    /// HTTP/2 streams one connection may have open (`SHOP_GRPC_MAX_STREAMS_PER_CONNECTION`
    /// [256]): one caller cannot take every slot through a single connection.
    pub max_streams_per_connection: u32,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 1024,
            max_streams_per_connection: 256,
        }
    }
}

impl GrpcLimits {
    /// The limits from `SHOP_GRPC_MAX_CONCURRENT_CALLS` and `SHOP_GRPC_MAX_STREAMS_PER_CONNECTION`.
    pub fn from_env(env: &impl crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let defaults = Self::default();
        let limits = Self {
            max_concurrent_calls: env.parse_or("SHOP_GRPC_MAX_CONCURRENT_CALLS", defaults.max_concurrent_calls)?,
            max_streams_per_connection: env.parse_or(
                "SHOP_GRPC_MAX_STREAMS_PER_CONNECTION",
                defaults.max_streams_per_connection,
            )?,
        };
        if !(1..=1_000_000).contains(&limits.max_concurrent_calls) {
            return Err(crate::config::ConfigError::new(
                "SHOP_GRPC_MAX_CONCURRENT_CALLS",
                "must be 1 to 1000000",
            ));
        }
        if limits.max_streams_per_connection == 0 {
            return Err(crate::config::ConfigError::new(
                "SHOP_GRPC_MAX_STREAMS_PER_CONNECTION",
                "must be at least 1",
            ));
        }
        Ok(limits)
    }
}

/// Assembles a gRPC server.
#[derive(Debug)]
pub struct GrpcServerBuilder {
    addr: SocketAddr,
    request_timeout: Duration,
    limits: GrpcLimits,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    dependencies: Vec<Dependency>,
    health_settings: HealthSettings,
    mesh: MeshIdentity,
    in_process: bool,
}

/// Metadata a caller may send only when it may assert end users (the gateway): removed from the
/// calls of any other caller.
pub const GATEWAY_METADATA: [&str; 1] = ["x-shop-client-ip"];

/// The path prefix of the health service, which answers without a mesh token.
const HEALTH_PATH: &str = "/grpc.health.v1.Health/";

impl GrpcServerBuilder {
    /// A server that will listen on `addr` (port 0 picks a free port) as mesh member `mesh`:
    /// it accepts the calls of the callers `mesh` trusts, for the methods its grants allow.
    pub fn new(addr: SocketAddr, mesh: MeshIdentity) -> Self {
        Self {
            mesh,
            addr,
            request_timeout: Duration::from_secs(30),
            limits: GrpcLimits::default(),
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            descriptor_sets: Vec::new(),
            dependencies: Vec::new(),
            health_settings: HealthSettings::default(),
            in_process: false,
        }
    }

    /// The server of a service: its address, mesh identity, health settings and limits.
    pub fn for_service(settings: &crate::service::ServiceSettings) -> Self {
        Self::new(settings.grpc_addr, settings.mesh.clone())
            .health_settings(settings.health.clone())
            .limits(settings.grpc_limits)
            .in_process(settings.in_process)
    }

    /// A backend the server needs: while it does not answer, the server reports NOT_SERVING
    /// (and, for the database, refuses calls with UNAVAILABLE).
    pub fn depends_on(mut self, dependency: Dependency) -> Self {
        self.dependencies.push(dependency);
        self
    }

    /// How often dependencies are probed, and how long a probe may take.
    pub fn health_settings(mut self, settings: HealthSettings) -> Self {
        self.health_settings = settings;
        self
    }

    /// Longest time one call may take before it fails with DEADLINE_EXCEEDED (a caller's
    /// shorter `grpc-timeout` wins).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many calls and streams the server takes on at once.
    pub fn limits(mut self, limits: GrpcLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether the server is also offered to the clients of its own process from when it is
    /// bound until it stops (see [`crate::grpc::in_process`]): their calls to its address skip
    /// the network (waiting until it serves), through
    /// the same authentication, admission, span, metrics and timeout.
    pub fn in_process(mut self, offered: bool) -> Self {
        self.in_process = offered;
        self
    }

    /// Adds a service; it is reported SERVING by the health service once the server runs.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Registers an encoded `FileDescriptorSet` for server reflection.
    pub fn reflection(mut self, descriptor_set: &'static [u8]) -> Self {
        self.descriptor_sets.push(descriptor_set);
        self
    }

    /// Binds the listener; the server starts with [`BoundGrpcServer::serve`].
    pub async fn bind(self) -> anyhow::Result<BoundGrpcServer> {
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("binding the gRPC listener on {}", self.addr))?;
        let local_addr = listener.local_addr()?;

        let (health, health_service) = tonic_health::server::health_reporter();
        // The gate covers the services added so far, not health and reflection, which must
        // answer whatever the backends do.
        let gate = CallGate::default();
        let guarded = gate.clone();
        let slots = Arc::new(Semaphore::new(self.limits.max_concurrent_calls));
        let mut routes = self.routes;
        if !self.service_names.is_empty() {
            // (axum refuses a route layer over no routes.)
            let services = routes
                .routes()
                .into_axum_router()
                .route_layer(axum::middleware::from_fn(move |request, next| {
                    admit(guarded.clone(), Arc::clone(&slots), request, next)
                }));
            routes = RoutesBuilder::from(services);
        }
        routes.add_service(health_service);
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for set in self.descriptor_sets {
            reflection = reflection.register_encoded_file_descriptor_set(set);
        }
        routes.add_service(reflection.build_v1().context("building server reflection")?);
        // Outside everything else, so that no service (reflection included) is reached unproven.
        let mesh = self.mesh;
        let mesh_name = mesh.name().to_owned();
        let authenticated =
            routes
                .routes()
                .into_axum_router()
                .layer(axum::middleware::from_fn(move |request, next| {
                    authenticate(mesh.clone(), request, next)
                }));
        let routes = RoutesBuilder::from(authenticated).routes();
        // Offered from now, so that the parts of a process built together call each other in
        // process from their first call; those calls wait until `serve`.
        let offer = self
            .in_process
            .then(|| in_process::offer(local_addr, call_stack(routes.clone()), self.request_timeout));

        Ok(BoundGrpcServer {
            component: mesh_name,
            listener,
            local_addr,
            request_timeout: self.request_timeout,
            limits: self.limits,
            routes,
            health,
            service_names: self.service_names,
            dependencies: self.dependencies,
            health_settings: self.health_settings,
            gate,
            offer,
        })
    }
}

/// Verifies the mesh token of a call (health excepted) and hands the verified caller to the
/// service in the request's extensions; refuses the call otherwise. Identity metadata from
/// earlier versions is removed whatever the outcome.
async fn authenticate(
    mesh: MeshIdentity,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers_mut();
    for name in UNPROVEN_IDENTITY_METADATA {
        headers.remove(name);
    }
    if request.uri().path().starts_with(HEALTH_PATH) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(TOKEN_METADATA)
        .and_then(|value| value.to_str().ok());
    match mesh.verify(token, request.uri().path()) {
        Ok(caller) => {
            if !mesh.grants().may_assert_user(&caller.service) {
                for name in GATEWAY_METADATA {
                    request.headers_mut().remove(name);
                }
            }
            if let Some(user) = &caller.user {
                crate::telemetry::record_end_user(&user.user_id);
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => {
            tracing::warn!(method = request.uri().path(), %refusal, "mesh call refused");
            refusal.into_status().into_http()
        }
    }
}

/// Admits a call to the services, or answers UNAVAILABLE at once: while the gate is closed
/// (machine code `unavailable`: waiting for a database that is known to be down would only tie
/// the call up until its deadline), or when every call slot is taken (`overloaded`). The slot
/// is held until the service has answered.
async fn admit(
    gate: CallGate,
    slots: Arc<Semaphore>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !gate.is_open() {
        return unavailable("unavailable", "a dependency is unavailable; try again shortly");
    }
    let Ok(_slot) = slots.try_acquire_owned() else {
        tracing::warn!(method = request.uri().path(), "call refused: every call slot is taken");
        return unavailable(
            "overloaded",
            "the service is at its concurrency limit; try again shortly",
        );
    };
    next.run(request).await
}

/// An UNAVAILABLE answer with machine code `code`.
fn unavailable(code: &'static str, message: &'static str) -> axum::response::Response {
    let mut status = tonic::Status::unavailable(message);
    status
        .metadata_mut()
        .insert(ERROR_CODE_METADATA, tonic::metadata::MetadataValue::from_static(code));
    status.into_http()
}

/// A server whose port is bound, ready to serve.
#[derive(Debug)]
pub struct BoundGrpcServer {
    /// Its mesh name (`order`, …): the `shop.service` of its `shop.service.serving`.
    component: String,
    listener: TcpListener,
    local_addr: SocketAddr,
    request_timeout: Duration,
    limits: GrpcLimits,
    routes: Routes,
    health: HealthReporter,
    service_names: Vec<&'static str>,
    dependencies: Vec<Dependency>,
    health_settings: HealthSettings,
    gate: CallGate,
    /// The server offered in process, if it is: its calls wait until it serves.
    offer: Option<in_process::Offer>,
}

impl BoundGrpcServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The health reporter, to mark services NOT_SERVING while a dependency is down.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight calls and returns.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let health = self.health.clone();
        health.set_service_status(LIVENESS, ServingStatus::Serving).await;
        // The empty name is the server as a whole (what `grpc_health_probe` asks by default);
        // the first round of probes sets it and every service's status before the first call.
        let mut watcher = DependencyWatcher::new(
            self.dependencies,
            self.health_settings,
            health.clone(),
            self.service_names.clone(),
            self.gate,
        )
        .reporting_as(self.component.clone());
        watcher.round().await;
        let watch_stop = CancellationToken::new();
        let watching = tokio::spawn(watcher.run(watch_stop.clone()));

        let names = self.service_names.clone();
        let stop_watching = watch_stop.clone();
        let component = self.component.clone();
        let offer = self.offer;
        if let Some(offer) = &offer {
            offer.serving();
        }
        let signal = async move {
            shutdown.cancelled().await;
            // Calls from this process go to the network from now on, and find it draining.
            drop(offer);
            // The watcher stops first, so it cannot report SERVING again while draining.
            stop_watching.cancel();
            let _ = watching.await;
            for name in names.iter().copied().chain([""]) {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            crate::health::report_serving(&component, false);
        };

        let served = Server::builder()
            .timeout(self.request_timeout)
            .max_concurrent_streams(self.limits.max_streams_per_connection)
            .layer(tower::layer::layer_fn(call_stack))
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(accepting(self.listener), signal)
            .await;
        watch_stop.cancel();
        served.context("serving gRPC")
    }
}

/// The layers around every call a server answers, over the network or in process: the call's
/// span (joined to the caller's trace) with its outcome, and its metrics, timed inside the span
/// on tonic's own response body.
fn call_stack(routes: Routes) -> CallStack {
    let trace = TraceLayer::new_for_grpc()
        .make_span_with(rpc::server_span::<Body>)
        // A trailers-only response (an error status) carries its code in the headers, a
        // full one in the trailers.
        .on_response(|response: &http::Response<_>, _: Duration, span: &tracing::Span| {
            rpc::record_headers(span, response.headers());
        })
        .on_eos(
            |trailers: Option<&http::HeaderMap>, _: Duration, span: &tracing::Span| {
                if let Some(trailers) = trailers {
                    rpc::record_headers(span, trailers);
                }
            },
        )
        .on_failure(|failure: GrpcFailureClass, latency: Duration, span: &tracing::Span| {
            // Logged (at error, which marks the span failed) only when the service failed:
            // NOT_FOUND and the like are answers, not failures.
            match failure {
                GrpcFailureClass::Code(code) if rpc::is_failure(tonic::Code::from(code.get())) => {
                    tracing::error!(parent: span, code = code.get(), ?latency, "gRPC call failed");
                }
                GrpcFailureClass::Code(code) => {
                    tracing::debug!(parent: span, code = code.get(), ?latency, "gRPC call refused");
                }
                GrpcFailureClass::Error(error) => {
                    rpc::record_code(span, tonic::Code::Internal, Some(&error));
                    tracing::error!(parent: span, %error, ?latency, "gRPC call failed");
                }
            }
        });
    let stack = tower::ServiceBuilder::new()
        .map_response(|response: http::Response<_>| response.map(Body::new))
        .layer(trace)
        .layer(crate::telemetry::metrics::RpcServerMetricsLayer)
        .service(routes);
    CallStack::new(stack)
}

/// The connections a gRPC server accepts on `listener`, each with `TCP_NODELAY` set (tonic
/// sets it only on listeners it binds itself). A unary response goes out as its headers and
/// message, then often its trailers in a write of their own; without it, that second write
/// waits for the client's delayed ACK of the first: 40 ms stalls that put one order in ten
/// placed on an idle shop at 48 ms instead of 5 (docs/benchmarks.md).
pub fn accepting(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
