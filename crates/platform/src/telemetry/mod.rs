//! Telemetry set up in one place: a `tracing` subscriber (human-readable or JSON lines, filtered
//! by `RUST_LOG`, JSON lines carrying `trace_id` and `span_id`), OpenTelemetry spans with W3C
//! trace-context propagation so one trace follows a request from the REST edge through gRPC
//! calls and queue messages, exported over OTLP (gRPC or HTTP/protobuf, see [`export`]) when an
//! endpoint is configured, sampled as `OTEL_TRACES_SAMPLER` says ([`sampler`]), under the
//! process's [`resource`]. The spans themselves are made in one place per kind: [`http`]
//! (the gateway's requests), [`rpc`] (gRPC server and client), [`messaging`] (queue producer
//! and consumer); [`propagation`] carries context across boundaries. Every metric is an
//! OpenTelemetry instrument served to Prometheus at `GET /metrics` ([`metrics`]) and, with an
//! OTLP endpoint, also exported there.

pub mod export;
pub mod http;
mod log_fields;
mod log_ids;
pub mod log_writer;
pub mod messaging;
pub mod metrics;
pub mod propagation;
pub mod resource;
pub mod rpc;
pub mod sampler;

use std::str::FromStr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    metrics::SdkMeterProvider,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{EnvFilter, Layer, fmt::writer::BoxMakeWriter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{ConfigError, Env};

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Multi-field human-readable lines, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line with trace ids, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not a log format: use pretty or json")),
        }
    }
}

/// Telemetry settings, from `SHOP_LOG_FORMAT`, `RUST_LOG` and the `OTEL_*` variables.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// The `service.name` resource of exported spans (`shop-order`, …).
    pub service_name: String,
    /// What exported telemetry says about the process.
    pub resource: resource::ResourceConfig,
    /// Where spans are exported; none when absent.
    pub traces: Option<export::OtlpExport>,
    /// Where metrics are pushed over OTLP (besides `GET /metrics`); none when absent.
    pub metrics_export: Option<export::OtlpExport>,
    /// Which traces are kept.
    pub sampler: Sampler,
    /// Log line format.
    pub format: LogFormat,
    /// The log filter (`RUST_LOG` syntax); `info` by default.
    pub filter: String,
    /// Log lines go to standard error instead of standard output: for command-line tools,
    /// whose standard output is their result.
    pub log_to_stderr: bool,
    /// `SHOP_METRICS_ADDR` [0.0.0.0:9464]: where `GET /metrics` is served; none with `off`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl TelemetryConfig {
    /// Reads the settings of `service_name` from `env`.
    pub fn from_env(env: &impl Env, service_name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            service_name: service_name.to_owned(),
            resource: resource::ResourceConfig::from_env(env, service_name)?,
            traces: export::OtlpExport::from_env(env, export::Signal::Traces)?,
            metrics_export: export::OtlpExport::from_env(env, export::Signal::Metrics)?,
            sampler: sampler::from_env(env)?,
            format: env.parse_or("SHOP_LOG_FORMAT", LogFormat::Pretty)?,
            filter: env.var("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            log_to_stderr: false,
            metrics_addr: metrics::addr_from_env(env, DEFAULT_METRICS_ADDR)?,
        })
    }
}

/// Records the signed-in end user a request is served for as `enduser.id` on the current
/// span: the gateway's request span once the caller's token is verified, a service's call
/// span once the mesh token is (the caller the gateway asserted). Both declare the field.
pub fn record_end_user(user_id: &impl std::fmt::Display) {
    tracing::Span::current().record("enduser.id", tracing::field::display(user_id));
}

/// Where a service binary serves `GET /metrics` by default (the port Prometheus exporters use).
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9464";

/// Keeps the exporters alive; flushes pending spans and metrics when dropped at the end of `main`.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    metrics_addr: Option<std::net::SocketAddr>,
    stop_metrics: tokio_util::sync::CancellationToken,
    /// The batched log output, written out when the guard drops.
    stdout: Option<log_writer::BatchedStdout>,
}

impl TelemetryGuard {
    /// Where `GET /metrics` is served (the bound port, when the configured one was 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop_metrics.cancel();
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {error}");
        }
        if let Some(meters) = self.meters.take()
            && let Err(error) = meters.shutdown()
        {
            eprintln!("flushing metrics failed: {error}");
        }
        if let Some(stdout) = &self.stdout
            && let Err(error) = stdout.flush()
        {
            eprintln!("writing the last log lines failed: {error}");
        }
    }
}

/// Installs the global subscriber, propagator and meter provider, and starts serving
/// `GET /metrics` when an address is configured (inside a Tokio runtime). Call once, first
/// thing in `main`.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|error| anyhow::anyhow!("RUST_LOG {:?} is not a valid filter: {error}", config.filter))?;

    let resource = config.resource.build();
    // Spans are always made, exported or not, so that trace ids propagate through the mesh
    // and every JSON log line of one request carries the same `trace_id`.
    let mut traces = SdkTracerProvider::builder()
        .with_sampler(config.sampler.clone())
        .with_resource(resource.clone());
    // An exporter that cannot be built is logged once the subscriber is up; the service runs on.
    let mut export_error = None;
    if let Some(export) = &config.traces {
        match export.exporter() {
            Ok(spans) => traces = traces.with_batch_exporter(spans),
            Err(error) => export_error = Some(format!("{error:#}")),
        }
    }
    let provider = traces.build();

    let mut metrics_export_error = None;
    let metric_exporter = match config.metrics_export.as_ref().map(export::OtlpExport::metric_exporter) {
        None => None,
        Some(Ok(exporter)) => Some(exporter),
        Some(Err(error)) => {
            metrics_export_error = Some(format!("{error:#}"));
            None
        }
    };
    let (meters, registry) = metrics::install(resource, metric_exporter)?;
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let metrics_addr = match config.metrics_addr {
        Some(addr) => Some(metrics::serve(addr, registry, stop_metrics.clone())?),
        None => None,
    };
    // Status comes from the spans' own rules (5xx, gRPC failures, failed messages) and from
    // error-level events, not from any event that carries an `error` field (a warning about a
    // retried call is not a failed request).
    //
    // What the layer would add by default and nothing here reads is left out, because every
    // span pays for it: busy and idle times (two clock reads per poll of a span's future), the
    // thread's name and id, and an OpenTelemetry context made current on every entry (the
    // context is taken from the `tracing` span itself, [`propagation`]).
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("shop"))
        .with_error_events_to_status(false)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_context_activation(false);

    // Service logs go to standard output in batches ([`log_writer`]); a tool's diagnostics
    // on standard error are written as they come.
    let stdout = (!config.log_to_stderr).then(log_writer::BatchedStdout::install);
    let writer = match &stdout {
        Some(stdout) => BoxMakeWriter::new(stdout.clone()),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let fmt_layer = match config.format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(true)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .event_format(log_ids::WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    // The span list ends with the current span: writing it a second time on
                    // its own made every line a third longer.
                    .with_current_span(false)
                    .with_span_list(true),
            ))
            .fmt_fields(log_fields::JsonSpanFields)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;
    match (&config.traces, export_error) {
        (Some(export), Some(error)) => {
            tracing::error!(endpoint = %export.endpoint, %error, "traces cannot be exported; the service runs without");
        }
        (Some(export), None) => {
            tracing::info!(endpoint = %export.endpoint, protocol = ?export.protocol, "exporting traces over OTLP");
        }
        (None, _) => {}
    }
    match (&config.metrics_export, metrics_export_error) {
        (Some(export), Some(error)) => {
            tracing::error!(endpoint = %export.endpoint, %error, "metrics cannot be pushed over OTLP; /metrics still serves them");
        }
        (Some(export), None) => {
            tracing::info!(endpoint = %export.endpoint, protocol = ?export.protocol, "pushing metrics over OTLP");
        }
        (None, _) => {}
    }
    if let Some(addr) = metrics_addr {
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
        meters: Some(meters),
        metrics_addr,
        stop_metrics,
        stdout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn defaults_are_pretty_info_and_no_export() {
        let config = TelemetryConfig::from_env(&MapEnv::default(), "user").ok();
        let config = config.map(|c| (c.format, c.filter, c.metrics_export, c.traces));
        assert_eq!(config, Some((LogFormat::Pretty, "info".to_owned(), None, None)));
    }

    #[test]
    fn bad_format_and_endpoint_are_refused() {
        let env = MapEnv::from_pairs([("SHOP_LOG_FORMAT", "xml")]);
        assert!(TelemetryConfig::from_env(&env, "user").is_err());
        let env = MapEnv::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")]);
        assert!(TelemetryConfig::from_env(&env, "user").is_err());
    }

    #[test]
    fn trace_context_round_trips_through_message_headers() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let remote = SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
            SpanId::from(0xb7ad6b7169203331_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let mut headers = std::collections::BTreeMap::new();
        headers.insert(
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        );
        let extracted = propagation::extract_message(&headers);
        assert_eq!(extracted.span().span_context(), &remote);

        let mut http_headers = ::http::HeaderMap::new();
        http_headers.insert(
            "traceparent",
            ::http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(propagation::extract_http(&http_headers).span().span_context(), &remote);
    }
}
