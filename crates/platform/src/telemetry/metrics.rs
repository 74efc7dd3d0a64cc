//! Prometheus metrics: every instrument of the process is an OpenTelemetry instrument made from
//! [`meter`], read by the OpenTelemetry Prometheus exporter into a `prometheus` registry and
//! served as text at `GET /metrics` on a port of its own ([`serve`], `SHOP_METRICS_ADDR`).
//! Names follow the OpenTelemetry semantic conventions (`rpc.server.duration`,
//! `http.server.request.duration`); the exporter turns them into Prometheus names with the
//! unit as suffix (`rpc_server_duration_seconds`) and dots into underscores.
//!
//! The RED instruments of the mesh are recorded in one place each: gRPC calls served and made
//! ([`RpcTimer`], used by the server layer and every [`crate::grpc::client::GrpcChannel`]) and
//! the gateway's requests ([`record_http_request`]).
//!
//! Gauges that need a query (a count in a database, a queue's depth) never run it per scrape
//! or per request: a background task polls on its own schedule ([`poll_every`]) and stores the
//! reading in a [`PolledGauge`], whose observable gauge reports the last reading.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use opentelemetry::{
    KeyValue,
    metrics::{Histogram, Meter, ObservableGauge},
};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio_util::sync::CancellationToken;
use tonic::{Code, body::Body};

use super::rpc;
use crate::config::{ConfigError, Env};

/// Bucket bounds (seconds) of every duration histogram: the OpenTelemetry HTTP conventions'
/// advice, from 5 ms to 10 s.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The meter every shop instrument is made from. Instruments made before [`super::init`]
/// installed the meter provider record nothing: make them after it (lazily, at first use).
pub fn meter() -> Meter {
    opentelemetry::global::meter("shop")
}

/// A histogram of durations in seconds, with [`DURATION_BUCKETS`].
pub fn duration_histogram(name: &'static str, description: &'static str) -> Histogram<f64> {
    meter()
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build()
}

/// A label set of a [`PolledGauge`] reading: `(key, value)` pairs.
type LabelSet = Vec<(&'static str, String)>;

/// An observable gauge reporting the last reading of each of its label sets, taken by whoever
/// polls (see [`poll_every`]): reading the gauge costs nothing but a lock.
pub struct PolledGauge {
    readings: Arc<Mutex<BTreeMap<LabelSet, f64>>>,
    /// Kept for as long as the readings are.
    _gauge: ObservableGauge<f64>,
}

impl fmt::Debug for PolledGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolledGauge").finish_non_exhaustive()
    }
}

impl PolledGauge {
    /// A gauge `name` on [`meter`]. Make it after the meter provider is installed (lazily).
    pub fn new(name: &'static str, unit: &'static str, description: &'static str) -> Self {
        let readings: Arc<Mutex<BTreeMap<LabelSet, f64>>> = Arc::default();
        let observed = Arc::clone(&readings);
        let gauge = meter()
            .f64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| {
                let readings = observed.lock().unwrap_or_else(PoisonError::into_inner);
                for (labels, value) in readings.iter() {
                    let labels: Vec<KeyValue> = labels
                        .iter()
                        .map(|(key, value)| KeyValue::new(*key, value.clone()))
                        .collect();
                    observer.observe(*value, &labels);
                }
            })
            .build();
        Self {
            readings,
            _gauge: gauge,
        }
    }

    /// Stores the reading of `labels`.
    pub fn set(&self, labels: &[(&'static str, &str)], value: f64) {
        self.readings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(label_set(labels), value);
    }

    /// Drops the reading of `labels`: the series disappears until the next reading (a value
    /// that could not be read is not reported as a stale one).
    pub fn remove(&self, labels: &[(&'static str, &str)]) {
        self.readings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&label_set(labels));
    }
}

fn label_set(labels: &[(&'static str, &str)]) -> LabelSet {
    labels.iter().map(|(key, value)| (*key, (*value).to_owned())).collect()
}

/// A backlog as two gauges: how many items wait (`<name>`) and how long the oldest has waited
/// (`<name>.oldest_age`, seconds; 0 when none waits): the outbox, the pending orders.
#[derive(Debug)]
pub struct BacklogGauges {
    count: PolledGauge,
    oldest_age: PolledGauge,
}

impl BacklogGauges {
    /// The gauges `count` (in `unit`) and `oldest_age` (in seconds), made on [`meter`].
    pub fn new(
        count: &'static str,
        unit: &'static str,
        description: &'static str,
        oldest_age: &'static str,
        age_description: &'static str,
    ) -> Self {
        Self {
            count: PolledGauge::new(count, unit, description),
            oldest_age: PolledGauge::new(oldest_age, "s", age_description),
        }
    }

    /// Reads a backlog from `db` and stores it under `labels`: the rows `waiting` selects, and
    /// the `since` time of the first of them by `order`, as of `now`. Two statements, cheap when
    /// an index serves `waiting` and `order`. A failed reading drops both series until the next
    /// one, and is returned.
    pub async fn poll<E: sea_orm::EntityTrait>(
        &self,
        labels: &[(&'static str, &str)],
        db: &sea_orm::DatabaseConnection,
        waiting: sea_orm::Select<E>,
        since: E::Column,
        order: E::Column,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()>
    where
        E::Model: Sync,
    {
        use sea_orm::{PaginatorTrait as _, QueryOrder as _, QuerySelect as _};
        let reading = async {
            let count = waiting.clone().count(db).await?;
            let oldest: Option<chrono::DateTime<chrono::Utc>> = waiting
                .select_only()
                .column(since)
                .order_by_asc(order)
                .limit(1)
                .into_tuple()
                .one(db)
                .await?;
            anyhow::Ok((count, oldest))
        };
        self.record(labels, reading.await, now)
    }

    fn record(
        &self,
        labels: &[(&'static str, &str)],
        reading: anyhow::Result<(u64, Option<chrono::DateTime<chrono::Utc>>)>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        match reading {
            Ok((count, oldest)) => {
                self.count.set(labels, count as f64);
                self.oldest_age
                    .set(labels, oldest.map_or(0.0, |since| seconds_since(since, now)));
                Ok(())
            }
            Err(error) => {
                self.count.remove(labels);
                self.oldest_age.remove(labels);
                Err(error)
            }
        }
    }
}

/// How often the gauges that need a query are read: often enough for a dashboard and an alert
/// that waits a few minutes, rare enough to cost nothing.
pub const POLL_INTERVAL: Duration = Duration::from_secs(15);

/// Runs `poll` at once and then every `interval` until `shutdown` is cancelled; a failed poll
/// is logged (at debug: the gauge's missing series tells) and tried again next time.
pub async fn poll_every<F, Fut>(what: &'static str, interval: Duration, shutdown: CancellationToken, mut poll: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            polled = poll() => {
                if let Err(error) = polled {
                    tracing::debug!(gauge = what, error = format!("{error:#}"), "could not read a gauge");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Seconds from `since` to `now`, never negative (clocks of two hosts may disagree a little).
pub fn seconds_since(since: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> f64 {
    (now - since).to_std().map_or(0.0, |age| age.as_secs_f64())
}

/// `SHOP_METRICS_ADDR`: where `GET /metrics` is served, `default` when unset; `off` serves no
/// metrics. Port 0 takes a free port (the address is logged at start).
pub fn addr_from_env(env: &impl Env, default: &str) -> Result<Option<SocketAddr>, ConfigError> {
    match env.var("SHOP_METRICS_ADDR").as_deref() {
        Some("off") => Ok(None),
        _ => env.addr_or("SHOP_METRICS_ADDR", default).map(Some),
    }
}

/// Installs the global meter provider: its instruments are read into the returned registry
/// (for [`serve`]) and, with an OTLP exporter ([`super::export::OtlpExport::metric_exporter`]),
/// also pushed to the collector periodically (`OTEL_METRIC_EXPORT_INTERVAL`, 60 s by default).
pub fn install(
    resource: opentelemetry_sdk::Resource,
    otlp: Option<opentelemetry_otlp::MetricExporter>,
) -> anyhow::Result<(SdkMeterProvider, prometheus::Registry)> {
    let registry = prometheus::Registry::new();
    let prometheus = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .context("building the Prometheus exporter")?;
    let mut meters = SdkMeterProvider::builder()
        .with_reader(prometheus)
        .with_resource(resource);
    if let Some(otlp) = otlp {
        meters = meters.with_periodic_exporter(otlp);
    }
    let meters = meters.build();
    opentelemetry::global::set_meter_provider(meters.clone());
    Ok((meters, registry))
}

/// The registry's metrics in the Prometheus text format.
pub fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut text = Vec::new();
    if let Err(error) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut text) {
        tracing::error!(%error, "encoding the metrics failed");
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Binds `addr` (now, so a taken port stops the start) and serves `GET /metrics` from
/// `registry` until `shutdown` is cancelled. Returns the bound address.
pub fn serve(
    addr: SocketAddr,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding the metrics listener {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    render(&registry),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    Ok(local)
}

/// `http.server.request.duration`: one request the gateway answered, labelled with its method,
/// its route template (absent when no route matched) and its status code.
pub fn record_http_request(method: &http::Method, route: Option<&str>, status: http::StatusCode, started: Instant) {
    static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
    let histogram = HISTOGRAM.get_or_init(|| {
        duration_histogram(
            "http.server.request.duration",
            "Duration of HTTP requests the gateway served.",
        )
    });
    let mut labels = vec![
        KeyValue::new("http.request.method", method.as_str().to_owned()),
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
    ];
    if let Some(route) = route {
        labels.push(KeyValue::new("http.route", route.to_owned()));
    }
    histogram.record(started.elapsed().as_secs_f64(), &labels);
}

/// Which side of a gRPC call a [`RpcTimer`] measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcSide {
    /// `rpc.server.duration`: a call served.
    Server,
    /// `rpc.client.duration`: a call made.
    Client,
}

fn rpc_histogram(side: RpcSide) -> &'static Histogram<f64> {
    static SERVER: OnceLock<Histogram<f64>> = OnceLock::new();
    static CLIENT: OnceLock<Histogram<f64>> = OnceLock::new();
    match side {
        RpcSide::Server => {
            SERVER.get_or_init(|| duration_histogram("rpc.server.duration", "Duration of gRPC calls served."))
        }
        RpcSide::Client => {
            CLIENT.get_or_init(|| duration_histogram("rpc.client.duration", "Duration of gRPC calls made."))
        }
    }
}

/// Measures one gRPC call, from its start until its status is known, and records it once in
/// `rpc.server.duration` or `rpc.client.duration` with `rpc.system`, `rpc.service`,
/// `rpc.method` and `rpc.grpc.status_code`. A call dropped before its status (the caller went
/// away) counts as CANCELLED.
#[derive(Debug)]
pub struct RpcTimer {
    side: RpcSide,
    started: Instant,
    service: String,
    method: String,
    done: bool,
}

impl RpcTimer {
    /// Starts timing the call to `path`; none for health checks and reflection, which have no
    /// span either ([`rpc::is_infrastructure`]).
    pub fn start(side: RpcSide, path: &str) -> Option<Self> {
        if rpc::is_infrastructure(path) {
            return None;
        }
        let (service, method) = rpc::split_path(path).unwrap_or(("", path));
        Some(Self {
            side,
            started: Instant::now(),
            service: service.to_owned(),
            method: method.to_owned(),
            done: false,
        })
    }

    /// Records the call with its final `code` (only the first time).
    pub fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        rpc_histogram(self.side).record(
            self.started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service.clone()),
                KeyValue::new("rpc.method", self.method.clone()),
                KeyValue::new("rpc.grpc.status_code", i64::from(code as i32)),
            ],
        );
    }

    /// Records the call now if `response` carries its status in its headers (a trailers-only
    /// answer), else once the body's trailers arrive.
    pub fn finish_with(mut self, response: http::Response<Body>) -> http::Response<Body> {
        match rpc::status_in(response.headers()) {
            Some(code) => {
                self.finish(code);
                response
            }
            None => response.map(|inner| rpc::TracedBody::wrap_timed(inner, tracing::Span::none(), Some(self))),
        }
    }
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The server half: a tower layer timing every call the gRPC server serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcServerMetricsLayer;

impl<S> tower::Layer<S> for RpcServerMetricsLayer {
    type Service = RpcServerMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcServerMetrics { inner }
    }
}

/// See [`RpcServerMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RpcServerMetrics<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for RpcServerMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timer = RpcTimer::start(RpcSide::Server, request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            match (timer, result) {
                (Some(timer), Ok(response)) => Ok(timer.finish_with(response)),
                (Some(mut timer), Err(error)) => {
                    timer.finish(Code::Internal);
                    Err(error)
                }
                (None, result) => result,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn the_metrics_address_defaults_and_turns_off() {
        let default = addr_from_env(&MapEnv::default(), "0.0.0.0:9464").ok().flatten();
        assert_eq!(default, "0.0.0.0:9464".parse().ok());
        let off = MapEnv::from_pairs([("SHOP_METRICS_ADDR", "off")]);
        assert_eq!(addr_from_env(&off, "0.0.0.0:9464").ok(), Some(None));
        let bad = MapEnv::from_pairs([("SHOP_METRICS_ADDR", "nowhere")]);
        assert!(addr_from_env(&bad, "0.0.0.0:9464").is_err());
    }
}
