//! A real OTLP receiver, in the test: the collector's gRPC `TraceService` and `MetricsService`
//! and the HTTP/protobuf protocol (`POST /v1/traces`, `POST /v1/metrics`), each transport on its
//! own free loopback port. Every span received is kept with the resource and the transport it
//! came with; of metrics, which process pushed which instrument over which transport.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::span::SpanKind,
};
use tokio_util::sync::CancellationToken;

/// How a span reached the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP over HTTP with a protobuf body.
    HttpProtobuf,
}

/// One span as received, flattened with its resource.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// How it came.
    pub transport: Transport,
    /// The resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, String>,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: SpanKind,
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex id of its parent; empty for a root.
    pub parent_span_id: String,
    /// `(trace id, span id)` of each link, in hex.
    pub links: Vec<(String, String)>,
    /// Its attributes, as text.
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// The resource's `service.name`.
    pub fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }

    /// The attribute `key`, as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), text(pair.value.as_ref())))
        .collect()
}

/// Every span `request` holds, flattened.
fn flatten(request: &ExportTraceServiceRequest, transport: Transport) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|resource| attributes(&resource.attributes))
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                spans.push(ReceivedSpan {
                    transport,
                    resource: resource.clone(),
                    name: span.name.clone(),
                    kind: span.kind(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                        .collect(),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    spans
}

/// One instrument pushed by one process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReceivedMetric {
    /// How it came.
    pub transport: Transport,
    /// The resource's `service.name`.
    pub service: String,
    /// The instrument's name (`shop.orders`).
    pub name: String,
}

/// Every instrument `request` holds.
fn metric_names(request: &ExportMetricsServiceRequest, transport: Transport) -> Vec<ReceivedMetric> {
    let mut metrics = Vec::new();
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map(|resource| attributes(&resource.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_metrics in &resource_metrics.scope_metrics {
            for metric in &scope_metrics.metrics {
                metrics.push(ReceivedMetric {
                    transport,
                    service: service.clone(),
                    name: metric.name.clone(),
                });
            }
        }
    }
    metrics
}

type Store = Arc<Mutex<Vec<ReceivedSpan>>>;
type MetricStore = Arc<Mutex<std::collections::BTreeSet<ReceivedMetric>>>;

/// The gRPC side.
struct GrpcReceiver(Store);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = flatten(request.get_ref(), Transport::Grpc);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The gRPC side of metrics.
struct GrpcMetricsReceiver(MetricStore);

#[tonic::async_trait]
impl MetricsService for GrpcMetricsReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let metrics = metric_names(request.get_ref(), Transport::Grpc);
        self.0.lock().unwrap().extend(metrics);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The HTTP side: a protobuf request `R` in, handed to `keep`, and the protobuf response `A`
/// out.
fn http_export<R: prost::Message + Default, A: prost::Message + Default>(
    headers: &HeaderMap,
    body: Bytes,
    keep: impl FnOnce(R),
) -> axum::response::Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("not protobuf: {content_type:?}"),
        )
            .into_response();
    }
    match R::decode(body) {
        Ok(request) => keep(request),
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        A::default().encode_to_vec(),
    )
        .into_response()
}

/// The receiver, listening until dropped.
pub struct Collector {
    /// The OTLP/gRPC port (`OTEL_EXPORTER_OTLP_ENDPOINT=http://<this>`).
    pub grpc: SocketAddr,
    /// The OTLP/HTTP port (`…_ENDPOINT=http://<this>`, protocol `http/protobuf`).
    pub http: SocketAddr,
    spans: Store,
    metrics: MetricStore,
    stop: CancellationToken,
}

impl Collector {
    /// Starts both receivers on free loopback ports.
    pub async fn start() -> Self {
        let spans = Store::default();
        let metrics = MetricStore::default();
        let stop = CancellationToken::new();

        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let service = TraceServiceServer::new(GrpcReceiver(Arc::clone(&spans)));
        let grpc_metrics = Arc::clone(&metrics);
        let stopped = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .add_service(MetricsServiceServer::new(GrpcMetricsReceiver(grpc_metrics)))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                    stopped.cancelled_owned(),
                )
                .await
                .unwrap();
        });

        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let span_store = Arc::clone(&spans);
        let metric_store = Arc::clone(&metrics);
        let router = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let store = Arc::clone(&span_store);
                    async move {
                        http_export::<ExportTraceServiceRequest, ExportTraceServiceResponse>(
                            &headers,
                            body,
                            |request| {
                                let spans = flatten(&request, Transport::HttpProtobuf);
                                store.lock().unwrap().extend(spans);
                            },
                        )
                    }
                }),
            )
            .route(
                "/v1/metrics",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let store = Arc::clone(&metric_store);
                    async move {
                        http_export::<ExportMetricsServiceRequest, ExportMetricsServiceResponse>(
                            &headers,
                            body,
                            |request| {
                                let received = metric_names(&request, Transport::HttpProtobuf);
                                store.lock().unwrap().extend(received);
                            },
                        )
                    }
                }),
            );
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(http_listener, router)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
                .unwrap();
        });
        Self {
            grpc,
            http,
            spans,
            metrics,
            stop,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Every instrument pushed so far, by process and transport.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.metrics.lock().unwrap().iter().cloned().collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
