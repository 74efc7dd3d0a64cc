//! Traces a person can read, across process boundaries: a gRPC call made inside a span gets a
//! CLIENT span `package.Service/Method` and is served in a SERVER span of the same name, its
//! child; a refusal (NOT_FOUND) is not an error, a failure (INTERNAL) is; health checks make no
//! spans. A message written to the outbox inside a span is published in a PRODUCER span
//! `send <queue>` (a child of that span) and processed in a CONSUMER span `process <queue>`
//! (a child of the producer span, linked to it), with the messaging attributes. Spans are
//! collected in memory by a real OpenTelemetry pipeline. A call to a server in the same process
//! (`grpc::in_process`) makes the same spans. The same calls are counted in the
//! `rpc.server.duration` and `rpc.client.duration` histograms that `GET /metrics` serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use opentelemetry::{
    Value,
    trace::{SpanId, SpanKind, Status as SpanStatus, TraceContextExt, TraceId, TracerProvider as _},
};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{InMemorySpanExporter, SdkTracerProvider, SpanData},
};
use sea_orm::TransactionTrait;
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use shop_platform::{
    db::{self, DatabaseConfig},
    grpc::{
        client::connect,
        mesh::{CATALOG, GATEWAY, MeshIdentity, MeshSettings},
    },
    outbox::{self, CreateMessagingTables, OutboxRelay, RelayOptions},
    queue::{
        MemoryQueue, Message, QueueSpec, WorkQueue,
        runner::{ConsumerRunner, Handler, Poison, Received, RunnerOptions},
    },
    telemetry::metrics,
    testing::{doubles::StockCatalog, metrics::Scraper, server::serve},
};
use shop_proto::pb::catalog::{self as catalog, catalog_service_client::CatalogServiceClient};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// One pipeline per test binary: the subscriber is process-global. The meter provider too,
/// installed before any instrument is made, and served at `GET /metrics` on a free port.
static SPANS: LazyLock<(InMemorySpanExporter, SdkTracerProvider)> = LazyLock::new(|| {
    let (_meters, registry) = metrics::install(opentelemetry_sdk::Resource::builder().build(), None).unwrap();
    REGISTRY.set(registry).unwrap();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_error_events_to_status(false),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();
    (exporter, provider)
});

static REGISTRY: std::sync::OnceLock<prometheus::Registry> = std::sync::OnceLock::new();

fn trace_of(span: &tracing::Span) -> TraceId {
    span.context().span().span_context().trace_id()
}

fn span_id_of(span: &tracing::Span) -> SpanId {
    span.context().span().span_context().span_id()
}

/// The finished spans of `trace`.
fn finished(trace: TraceId) -> Vec<SpanData> {
    let (exporter, provider) = &*SPANS;
    provider.force_flush().unwrap();
    exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|span| span.span_context.trace_id() == trace)
        .collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn one<'a>(spans: &'a [SpanData], name: &str, kind: SpanKind) -> &'a SpanData {
    let found: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.name == name && span.span_kind == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind:?} span {name:?} in {spans:#?}");
    found[0]
}

/// `GetStock` answers by product id: `ok`, `missing` (NOT_FOUND), `broken` (INTERNAL);
/// `ancestry`: the names of the spans above the one the call is served in, as
/// `tracing` knows them (what the log lines list), `/`-separated, and how the call came.
async fn stock_by_id(request: Request<catalog::GetStockRequest>) -> Result<catalog::GetStockResponse, Status> {
    match request.get_ref().product_id.as_str() {
        "missing" => Err(Status::not_found("no such product")),
        "broken" => Err(Status::internal("the database is on fire")),
        "ancestry" => Ok(catalog::GetStockResponse {
            product_id: format!(
                "{};{}",
                ancestry(),
                request.remote_addr().map_or("in process", |_| "over the network")
            ),
            stock: 7,
        }),
        _ => Ok(catalog::GetStockResponse {
            product_id: request.into_inner().product_id,
            stock: 7,
        }),
    }
}

/// The names of the current span's ancestors, nearest first.
fn ancestry() -> String {
    use tracing_subscriber::registry::{LookupSpan as _, Registry};
    let Some(id) = tracing::Span::current().id() else {
        return "no span".to_owned();
    };
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>().expect("the registry");
        let span = registry.span(&id).expect("the current span");
        span.scope()
            .skip(1)
            .map(|above| above.name())
            .collect::<Vec<_>>()
            .join("/")
    })
}

/// Calls `GetStock(product)` inside a fresh `caller` span: (the caller's span, the call's code).
async fn get_stock(product: &str) -> (tracing::Span, Code) {
    get_stock_from(product, false).await.0
}

/// [`get_stock`] from a server offered in process or not; also the answer's product id.
async fn get_stock_from(product: &str, in_process: bool) -> ((tracing::Span, Code), String) {
    let _ = &*SPANS;
    let mesh = MeshIdentity::ephemeral_mesh(&[GATEWAY, CATALOG], &MeshSettings::default()).unwrap();
    let server = serve(mesh[CATALOG].clone(), |builder| {
        builder
            .in_process(in_process)
            .add_service(StockCatalog::server(stock_by_id))
    })
    .await;
    let channel = connect(&server.target(), &Default::default())
        .await
        .unwrap()
        .signed_by(&mesh[GATEWAY], CATALOG);

    let caller = tracing::info_span!("caller");
    let (code, answer) = async {
        let reply = CatalogServiceClient::new(channel.clone())
            .get_stock(catalog::GetStockRequest {
                product_id: product.to_owned(),
            })
            .await;
        match reply {
            Ok(reply) => (Code::Ok, reply.into_inner().product_id),
            Err(status) => (status.code(), String::new()),
        }
    }
    .instrument(caller.clone())
    .await;
    // Health checks, as probes make them all the time, leave no span.
    async {
        HealthClient::new(channel)
            .check(HealthCheckRequest { service: String::new() })
            .await
            .unwrap();
    }
    .instrument(caller.clone())
    .await;
    server.shutdown.cancel();
    server.served.await.unwrap().unwrap();
    ((caller, code), answer)
}

#[tokio::test]
async fn a_grpc_call_has_a_client_span_and_a_server_span_below_it() {
    let (caller, code) = get_stock("ok").await;
    assert_eq!(code, Code::Ok);
    let spans = finished(trace_of(&caller));
    let name = "shop.catalog.v1.CatalogService/GetStock";
    let client = one(&spans, name, SpanKind::Client);
    let server = one(&spans, name, SpanKind::Server);
    assert_eq!(
        client.parent_span_id,
        span_id_of(&caller),
        "the client span is the caller's child"
    );
    assert_eq!(
        server.parent_span_id,
        client.span_context.span_id(),
        "the server span is the client span's child"
    );
    for span in [client, server] {
        assert_eq!(attribute(span, "rpc.system"), Some("grpc".into()));
        assert_eq!(
            attribute(span, "rpc.service"),
            Some("shop.catalog.v1.CatalogService".into())
        );
        assert_eq!(attribute(span, "rpc.method"), Some("GetStock".into()));
        assert_eq!(attribute(span, "rpc.grpc.status_code"), Some(Value::I64(0)));
        assert_eq!(span.status, SpanStatus::Unset);
    }
    assert!(
        !spans.iter().any(|span| span.name.contains("grpc.health")),
        "health checks make no spans: {spans:#?}"
    );
}

/// A call in process runs in the caller's task, yet it is served in a span of its own, as
/// over the network: the caller's spans do not become the server span's ancestors (and fill
/// the callee's log lines), and its trace parent is the client span all the same.
#[tokio::test]
async fn a_call_in_process_is_served_in_a_root_span_below_the_client_span_of_its_trace() {
    for in_process in [false, true] {
        let ((caller, code), ancestry) = get_stock_from("ancestry", in_process).await;
        assert_eq!(code, Code::Ok);
        let how = if in_process { "in process" } else { "over the network" };
        assert_eq!(ancestry, format!(";{how}"));
        let spans = finished(trace_of(&caller));
        let name = "shop.catalog.v1.CatalogService/GetStock";
        let client = one(&spans, name, SpanKind::Client);
        let server = one(&spans, name, SpanKind::Server);
        assert_eq!(
            server.parent_span_id,
            client.span_context.span_id(),
            "in process: {in_process}"
        );
    }
}

#[tokio::test]
async fn not_found_is_an_answer_and_internal_a_failure() {
    let (caller, code) = get_stock("missing").await;
    assert_eq!(code, Code::NotFound);
    let spans = finished(trace_of(&caller));
    for kind in [SpanKind::Client, SpanKind::Server] {
        let span = one(&spans, "shop.catalog.v1.CatalogService/GetStock", kind.clone());
        assert_eq!(attribute(span, "rpc.grpc.status_code"), Some(Value::I64(5)));
        assert_eq!(span.status, SpanStatus::Unset, "{kind:?}: NOT_FOUND is not an error");
    }

    let (caller, code) = get_stock("broken").await;
    assert_eq!(code, Code::Internal);
    let spans = finished(trace_of(&caller));
    for kind in [SpanKind::Client, SpanKind::Server] {
        let span = one(&spans, "shop.catalog.v1.CatalogService/GetStock", kind.clone());
        assert_eq!(attribute(span, "rpc.grpc.status_code"), Some(Value::I64(13)));
        assert!(
            matches!(span.status, SpanStatus::Error { .. }),
            "{kind:?}: INTERNAL is an error: {:?}",
            span.status
        );
    }
}

#[tokio::test]
async fn grpc_calls_are_counted_in_duration_histograms_by_method_and_status() {
    for product in ["ok", "ok", "missing", "broken"] {
        get_stock(product).await;
    }
    let scraper = Scraper::serving(REGISTRY.get().unwrap().clone());
    for side in ["rpc_server_duration_seconds", "rpc_client_duration_seconds"] {
        let call = [
            "rpc_system=\"grpc\"",
            "rpc_service=\"shop.catalog.v1.CatalogService\"",
            "rpc_method=\"GetStock\"",
        ];
        for (code, count) in [("0", 2.0), ("5", 1.0), ("13", 1.0)] {
            let status = format!("rpc_grpc_status_code=\"{code}\"");
            let labels: Vec<&str> = call.iter().copied().chain([status.as_str()]).collect();
            assert_eq!(
                scraper.value(&format!("{side}_count"), &labels).await,
                Some(count),
                "{side} {code}"
            );
            // Buckets from 5 ms to 10 s, cumulative: every call is under 10 s.
            let under_10s: Vec<&str> = labels.iter().copied().chain(["le=\"10\""]).collect();
            assert_eq!(scraper.value(&format!("{side}_bucket"), &under_10s).await, Some(count));
            let lowest: Vec<&str> = labels.iter().copied().chain(["le=\"0.005\""]).collect();
            assert_eq!(scraper.lines(&format!("{side}_bucket"), &lowest).await.len(), 1);
        }
        // Health checks are not counted, as they make no span.
        for series in ["bucket", "count", "sum"] {
            assert!(
                scraper
                    .lines(&format!("{side}_{series}"), &["grpc.health"])
                    .await
                    .is_empty()
            );
        }
    }
}

struct Migrator;

#[async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateMessagingTables)]
    }
}

/// Records the order id of each message on its span, as the services' handlers do.
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<String>>,
}

#[async_trait]
impl Handler for Recorder {
    type Item = String;

    fn decode(&self, message: &Message) -> Result<String, Poison> {
        let order = String::from_utf8_lossy(&message.payload).into_owned();
        tracing::Span::current().record("shop.order.id", order.as_str());
        Ok(order)
    }

    async fn apply(&self, items: &[Received<'_, String>]) -> anyhow::Result<()> {
        for one in items {
            one.span.record("shop.outcome", "applied");
            self.applied.lock().unwrap().push(one.item.clone());
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_outbox_message_is_sent_and_processed_in_the_writers_trace() {
    let _ = &*SPANS;
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::new(format!("sqlite://{}/shop.db", dir.path().display()), "tracetest");
    let db = db::connect(&config).await.unwrap();
    db::migrate::<Migrator>(&db, &config.schema).await.unwrap();
    let queue = MemoryQueue::new();
    queue.declare(&QueueSpec::new("traced")).await.unwrap();
    let queue: Arc<dyn WorkQueue> = Arc::new(queue);

    // The work that writes the message, e.g. PlaceOrder.
    let writer = tracing::info_span!("writer");
    async {
        let txn = db.begin().await.unwrap();
        outbox::enqueue(&txn, "traced", "test.Event", b"order-1".to_vec())
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    .instrument(writer.clone())
    .await;
    let trace = trace_of(&writer);

    let relay = OutboxRelay::new(db.clone(), Arc::clone(&queue), RelayOptions::default());
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let consuming = tokio::spawn(
        ConsumerRunner::new(
            Arc::clone(&queue),
            "traced",
            Arc::clone(&recorder),
            RunnerOptions::default(),
        )
        .run(shutdown.clone()),
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while recorder.applied.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    shutdown.cancel();
    consuming.await.unwrap();

    let spans = finished(trace);
    let send = one(&spans, "send traced", SpanKind::Producer);
    let process = one(&spans, "process traced", SpanKind::Consumer);
    assert_eq!(send.parent_span_id, span_id_of(&writer), "sent in the writer's trace");
    assert_eq!(
        process.parent_span_id,
        send.span_context.span_id(),
        "processed below the send"
    );
    assert_eq!(
        process
            .links
            .links
            .iter()
            .map(|link| link.span_context.span_id())
            .collect::<Vec<_>>(),
        vec![send.span_context.span_id()],
        "and linked to it"
    );
    for (span, operation) in [(send, "send"), (process, "process")] {
        assert_eq!(attribute(span, "messaging.system"), Some("shop.memory".into()));
        assert_eq!(attribute(span, "messaging.destination.name"), Some("traced".into()));
        assert_eq!(attribute(span, "messaging.operation.type"), Some(operation.into()));
        assert!(attribute(span, "messaging.message.id").is_some());
        assert_eq!(span.status, SpanStatus::Unset);
    }
    assert_eq!(attribute(process, "shop.order.id"), Some("order-1".into()));
    assert_eq!(attribute(process, "shop.outcome"), Some("applied".into()));
}
