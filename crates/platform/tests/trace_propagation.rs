//! W3C trace context crosses process boundaries: a gRPC call made inside a span is served in a
//! span of the same trace, and a message written to the outbox inside a span carries that trace
//! to its consumer. Spans are collected in memory by a real OpenTelemetry pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::LazyLock, time::Duration};

use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{InMemorySpanExporter, SdkTracerProvider},
};
use shop_platform::{
    grpc::{
        client::{Target, connect},
        server::GrpcServerBuilder,
    },
    queue::{MemoryQueue, Message, QueueSpec, WorkQueue},
    telemetry::propagation,
};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// One pipeline per test binary: the subscriber is process-global.
static SPANS: LazyLock<(InMemorySpanExporter, SdkTracerProvider)> = LazyLock::new(|| {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    (exporter, provider)
});

fn trace_of(span: &tracing::Span) -> TraceId {
    span.context().span().span_context().trace_id()
}

#[tokio::test]
async fn a_grpc_call_is_served_in_the_callers_trace() {
    let (exporter, provider) = &*SPANS;
    let server = GrpcServerBuilder::new("127.0.0.1:0".parse().unwrap())
        .bind()
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(server.serve(shutdown.clone()));

    let channel = connect(&Target::parse(&format!("http://{addr}")).unwrap(), &Default::default())
        .await
        .unwrap();
    let caller = tracing::info_span!("caller");
    let trace = trace_of(&caller);
    async {
        HealthClient::new(channel)
            .check(HealthCheckRequest { service: String::new() })
            .await
            .unwrap();
    }
    .instrument(caller)
    .await;
    shutdown.cancel();
    served.await.unwrap().unwrap();

    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let server_span = spans
        .iter()
        .find(|span| span.name == "grpc.server" && span.span_context.trace_id() == trace)
        .unwrap_or_else(|| panic!("no server span in trace {trace}: {spans:#?}"));
    assert_ne!(
        server_span.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "it has a remote parent"
    );
}

#[tokio::test]
async fn a_queue_message_carries_the_producers_trace() {
    let _ = &*SPANS;
    let queue = MemoryQueue::new();
    queue.declare(&QueueSpec::new("traced")).await.unwrap();

    let producer = tracing::info_span!("producer");
    let trace = trace_of(&producer);
    let mut headers = Default::default();
    producer.in_scope(|| propagation::inject_message(&mut headers));
    assert!(headers.contains_key("traceparent"), "{headers:?}");
    let message = Message {
        id: "m1".into(),
        kind: "test.Event".into(),
        payload: Vec::new(),
        headers,
    };
    queue.publish("traced", vec![message]).await.unwrap();

    let mut consumer = queue.consume("traced", 1).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap()
        .unwrap();
    let consumer_span = tracing::info_span!("consumer", trace_id = tracing::field::Empty);
    propagation::set_remote_parent(&consumer_span, propagation::extract_message(&delivery.message.headers));
    assert_eq!(
        trace_of(&consumer_span),
        trace,
        "the consumer joins the producer's trace"
    );
    delivery.ack().await.unwrap();
}
