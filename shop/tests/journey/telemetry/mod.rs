//! The telemetry of the real binaries, checked with real receivers rather than in-memory
//! exporters: the four service binaries on PostgreSQL, Redis and RabbitMQ, configured only by
//! the standard `OTEL_EXPORTER_OTLP_*` variables, export their spans and push their metrics to
//! an OTLP receiver in this test ([`otlp`]: gRPC, or HTTP/protobuf `POST /v1/traces` and
//! `/v1/metrics`), and a real Prometheus scrapes their `/metrics` ([`prometheus`]). One order
//! placed over REST must
//! come out as one trace: the gateway's request, the order service's `PlaceOrder`, the
//! reservation sent to the catalog and processed there, and its result processed back in the
//! order service, each span a child of the one before and the queue hops linked. Collectors that
//! do not answer (`https://` included) must not stop a service from starting and serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod otlp;
mod prometheus;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use self::otlp::{Collector, ReceivedSpan, Transport};
use crate::{
    api::eventually,
    journey::{create_product, log_in, place_order, sign_up},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack},
};

/// How long an order may take to be paid, and its spans to reach the receiver.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The binaries of the separate-services stack.
const BINARIES: [&str; 4] = ["shop-catalog", "shop-user", "shop-order", "shop-gateway"];

/// What every process of a telemetry stack gets: spans exported every 100 ms instead of every
/// 5 s and metrics pushed every 500 ms instead of every minute (the SDK's standard
/// `OTEL_BSP_SCHEDULE_DELAY` and `OTEL_METRIC_EXPORT_INTERVAL`), and no shipment during the
/// test.
fn quick_export() -> Vec<(String, String)> {
    [
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("SHOP_SHIP_AFTER", "1h"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .to_vec()
}

/// The order placed by [`place_one_order`].
struct Placed {
    order_id: String,
    buyer_id: String,
}

/// The admin puts a product on sale, a buyer signs up (code by mail) and orders one; returns
/// once the order is paid.
async fn place_one_order(stack: &Stack) -> Placed {
    let api = &stack.api;
    let admin = log_in(api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let product = create_product(api, &admin, "Brass desk bell", "Rings once per order", 15_000, 5).await;
    let buyer = sign_up(api, &stack.mail, "buyer").await;
    let order = place_order(
        api,
        &buyer,
        "telemetry-1",
        &json!({ "items": [{ "product_id": product, "quantity": 1 }] }),
    )
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    eventually("the order is paid", SETTLE_TIMEOUT, async || {
        let order = api
            .get(&format!("/orders/{order_id}"))
            .token(&buyer.access)
            .send()
            .await
            .expect(200);
        assert_ne!(order["status"], "rejected", "{order}");
        (order["status"] == "paid").then_some(())
    })
    .await;
    Placed {
        order_id,
        buyer_id: buyer.user_id,
    }
}

/// The spans of one trace, with lookups by what they are.
struct Trace {
    spans: Vec<ReceivedSpan>,
}

impl Trace {
    /// The spans of `received` in the trace `trace_id`.
    fn of(received: &[ReceivedSpan], trace_id: &str) -> Self {
        Self {
            spans: received
                .iter()
                .filter(|span| span.trace_id == trace_id)
                .cloned()
                .collect(),
        }
    }

    /// The one span of `service` of `kind` named `name`.
    #[track_caller]
    fn one(&self, service: &str, kind: SpanKind, name: &str) -> &ReceivedSpan {
        let found: Vec<&ReceivedSpan> = self
            .spans
            .iter()
            .filter(|span| span.service() == service && span.kind == kind && span.name == name)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {kind:?} span {name:?} of {service} in the trace: {}",
            self.describe()
        );
        found[0]
    }

    fn has(&self, service: &str, kind: SpanKind, name: &str) -> bool {
        self.spans
            .iter()
            .any(|span| span.service() == service && span.kind == kind && span.name == name)
    }

    /// Whether `ancestor` is `span`'s parent, or its parent's, and so on.
    fn descends(&self, span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
        let mut parent = span.parent_span_id.clone();
        for _ in 0..self.spans.len() {
            if parent == ancestor.span_id {
                return true;
            }
            match self.spans.iter().find(|candidate| candidate.span_id == parent) {
                Some(next) => parent = next.parent_span_id.clone(),
                None => return false,
            }
        }
        false
    }

    /// One line per span: service, kind, name, ids.
    fn describe(&self) -> String {
        self.spans
            .iter()
            .map(|span| {
                format!(
                    "\n  {} {:?} {:?} span {} parent {} links {:?} {:?}",
                    span.service(),
                    span.kind,
                    span.name,
                    span.span_id,
                    span.parent_span_id,
                    span.links,
                    span.attributes
                )
            })
            .collect()
    }
}

/// The names of the spans an order's trace must hold, as `(service, kind, name)`.
fn expected_spans(stack: &Stack) -> Vec<(&'static str, SpanKind, String)> {
    let place = "shop.order.v1.OrderService/PlaceOrder".to_owned();
    vec![
        ("shop-gateway", SpanKind::Server, "POST /api/v1/orders".to_owned()),
        ("shop-gateway", SpanKind::Client, place.clone()),
        ("shop-order", SpanKind::Server, place),
        (
            "shop-order",
            SpanKind::Producer,
            format!("send {}", stack.queue("reserve")),
        ),
        (
            "shop-catalog",
            SpanKind::Consumer,
            format!("process {}", stack.queue("reserve")),
        ),
        (
            "shop-catalog",
            SpanKind::Producer,
            format!("send {}", stack.queue("results")),
        ),
        (
            "shop-order",
            SpanKind::Consumer,
            format!("process {}", stack.queue("results")),
        ),
    ]
}

/// Waits until the receiver holds the whole trace of `placed` (and spans of every binary), then
/// checks its shape: who is whose parent, the links of the queue hops, the attributes, and
/// that it all came over `transport`.
async fn assert_order_trace(collector: &Collector, stack: &Stack, placed: &Placed, transport: Transport) {
    let expected = expected_spans(stack);
    let results = format!("process {}", stack.queue("results"));
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let trace = loop {
        let received = collector.spans();
        let trace_id = received
            .iter()
            .find(|span| {
                span.kind == SpanKind::Consumer
                    && span.name == results
                    && span.attribute("shop.order.id") == Some(placed.order_id.as_str())
            })
            .map(|span| span.trace_id.clone());
        let every_binary = BINARIES
            .iter()
            .all(|binary| received.iter().any(|span| span.service() == *binary));
        let complete = trace_id.as_ref().is_some_and(|trace_id| {
            let trace = Trace::of(&received, trace_id);
            expected
                .iter()
                .all(|(service, kind, name)| trace.has(service, *kind, name))
        });
        if complete && every_binary {
            break Trace::of(&received, &trace_id.unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "the order's whole trace (and spans of every binary) not received within \
             {SETTLE_TIMEOUT:?}; received: {}",
            Trace { spans: received }.describe()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Every process exported under its own resource, over the transport it was given.
    for span in collector.spans() {
        assert_eq!(span.transport, transport, "{span:?}");
        assert!(BINARIES.contains(&span.service()), "{span:?}");
        assert_eq!(span.resource.get("service.namespace").map(String::as_str), Some("shop"));
        assert!(span.resource.contains_key("service.version"), "{span:?}");
    }

    // Spans carry what the conventions name, not the tracing layer's per-span extras (busy and
    // idle times, the thread), which every span would pay for and nothing reads.
    for span in &trace.spans {
        for extra in ["busy_ns", "idle_ns", "thread.id", "thread.name"] {
            assert_eq!(span.attribute(extra), None, "{extra} on {span:?}");
        }
    }

    let name = |index: usize| expected[index].2.as_str();

    // The gateway's request starts the trace.
    let edge = trace.one("shop-gateway", SpanKind::Server, name(0));
    assert_eq!(edge.parent_span_id, "", "the edge is the root: {}", trace.describe());
    assert_eq!(edge.attribute("http.request.method"), Some("POST"));
    assert_eq!(edge.attribute("http.route"), Some("/api/v1/orders"));
    assert_eq!(edge.attribute("url.path"), Some("/api/v1/orders"));
    assert_eq!(edge.attribute("http.response.status_code"), Some("202"));
    assert_eq!(edge.attribute("enduser.id"), Some(placed.buyer_id.as_str()));
    // The request's one span at the edge: the gRPC call is its direct child.

    // Its gRPC call, served by the order service.
    let call = trace.one("shop-gateway", SpanKind::Client, name(1));
    assert_eq!(call.parent_span_id, edge.span_id, "{}", trace.describe());
    let served = trace.one("shop-order", SpanKind::Server, name(2));
    assert_eq!(served.parent_span_id, call.span_id, "{}", trace.describe());
    assert_eq!(served.attribute("enduser.id"), Some(placed.buyer_id.as_str()));
    for span in [call, served] {
        assert_eq!(span.attribute("rpc.system"), Some("grpc"));
        assert_eq!(span.attribute("rpc.service"), Some("shop.order.v1.OrderService"));
        assert_eq!(span.attribute("rpc.method"), Some("PlaceOrder"));
        assert_eq!(span.attribute("rpc.grpc.status_code"), Some("0"));
    }

    // The reservation: sent by the order service's relay, processed by the catalog.
    let send_reserve = trace.one("shop-order", SpanKind::Producer, name(3));
    assert!(trace.descends(send_reserve, served), "{}", trace.describe());
    let process_reserve = trace.one("shop-catalog", SpanKind::Consumer, name(4));
    assert_queue_hop(&trace, send_reserve, process_reserve, stack.queue("reserve"));
    assert_eq!(
        process_reserve.attribute("shop.order.id"),
        Some(placed.order_id.as_str())
    );
    assert_eq!(process_reserve.attribute("shop.outcome"), Some("reserved"));

    // Its result: sent by the catalog's relay, processed by the order service.
    let send_result = trace.one("shop-catalog", SpanKind::Producer, name(5));
    assert!(trace.descends(send_result, process_reserve), "{}", trace.describe());
    let process_result = trace.one("shop-order", SpanKind::Consumer, name(6));
    assert_queue_hop(&trace, send_result, process_result, stack.queue("results"));
    assert_eq!(
        process_result.attribute("shop.order.id"),
        Some(placed.order_id.as_str())
    );
    assert_eq!(process_result.attribute("shop.outcome"), Some("reserved"));
}

/// Waits until the receiver holds, over `transport`, the order funnel pushed by the order
/// service and the RED histograms of the gateway and the services, and checks that every
/// metric came over `transport`.
async fn assert_order_metrics(collector: &Collector, transport: Transport) {
    let expected = [
        ("shop-gateway", "http.server.request.duration"),
        ("shop-gateway", "rpc.client.duration"),
        ("shop-order", "rpc.server.duration"),
        ("shop-order", "shop.orders"),
        ("shop-catalog", "catalog.stock.applied"),
        ("shop-user", "rpc.server.duration"),
    ];
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let received = collector.metrics();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(service, name)| {
                !received
                    .iter()
                    .any(|metric| metric.service == *service && metric.name == *name)
            })
            .collect();
        if missing.is_empty() {
            for metric in &received {
                assert_eq!(metric.transport, transport, "{metric:?}");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics {missing:?} not pushed within {SETTLE_TIMEOUT:?}; received: {received:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `process` is the child of `send`, linked to it, both about the same message on `queue`.
#[track_caller]
fn assert_queue_hop(trace: &Trace, send: &ReceivedSpan, process: &ReceivedSpan, queue: &str) {
    assert_eq!(process.parent_span_id, send.span_id, "{}", trace.describe());
    assert!(
        process.links.contains(&(send.trace_id.clone(), send.span_id.clone())),
        "{process:?} links to {send:?}"
    );
    for (span, operation) in [(send, "send"), (process, "process")] {
        assert_eq!(span.attribute("messaging.system"), Some("rabbitmq"), "{span:?}");
        assert_eq!(span.attribute("messaging.destination.name"), Some(queue), "{span:?}");
        assert_eq!(span.attribute("messaging.operation.type"), Some(operation), "{span:?}");
    }
    let id = send.attribute("messaging.message.id");
    assert!(id.is_some_and(|id| !id.is_empty()), "{send:?}");
    assert_eq!(process.attribute("messaging.message.id"), id);
}

/// The stack exporting to `collector` over `transport`.
async fn exporting_stack(collector: &Collector, transport: Transport) -> Stack {
    let (endpoint, protocol) = match transport {
        Transport::Grpc => (format!("http://{}", collector.grpc), "grpc"),
        Transport::HttpProtobuf => (format!("http://{}", collector.http), "http/protobuf"),
    };
    Stack::services_with(|_| {
        let mut env = quick_export();
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint.clone()));
        env.push(("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(), protocol.to_owned()));
        env
    })
    .await
}

#[tokio::test]
async fn an_order_is_one_trace_received_over_otlp_grpc() {
    let collector = Collector::start().await;
    let mut stack = exporting_stack(&collector, Transport::Grpc).await;
    let placed = place_one_order(&stack).await;
    assert_order_trace(&collector, &stack, &placed, Transport::Grpc).await;
    assert_order_metrics(&collector, Transport::Grpc).await;
    stack.assert_running_without("panicked");
}

#[tokio::test]
async fn an_order_is_one_trace_received_over_otlp_http_protobuf() {
    let collector = Collector::start().await;
    let mut stack = exporting_stack(&collector, Transport::HttpProtobuf).await;
    let placed = place_one_order(&stack).await;
    assert_order_trace(&collector, &stack, &placed, Transport::HttpProtobuf).await;
    assert_order_metrics(&collector, Transport::HttpProtobuf).await;
    stack.assert_running_without("panicked");
}

/// A loopback port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn collectors_that_do_not_answer_do_not_stop_the_services() {
    // Each binary gets another unanswered collector: TLS over gRPC, TLS over HTTP/protobuf,
    // plain HTTP/protobuf; the gateway TLS over HTTP/protobuf too.
    let settings = |binary: &str| -> [(&str, String); 2] {
        let port = closed_port();
        match binary {
            "shop-catalog" => [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://127.0.0.1:{port}")),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ],
            "shop-order" => [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}")),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            ],
            _ => [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://127.0.0.1:{port}")),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            ],
        }
    };
    let mut stack = Stack::services_with(|binary| {
        let mut env = quick_export();
        env.extend(settings(binary).map(|(key, value)| (key.to_owned(), value)));
        env
    })
    .await;
    // Ready (the gateway's `/readyz` asked every service) and serving: an order goes through,
    // its spans are exported (and fail) meanwhile.
    place_one_order(&stack).await;
    for (name, addr) in stack.grpc.clone() {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest { service: String::new() })
            .await
            .unwrap_or_else(|status| panic!("{name}: {status:?}"));
        assert_eq!(reply.into_inner().status(), ServingStatus::Serving, "{name}");
    }
    // Several export rounds later, everyone still runs and no exporter thread died on the way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.assert_running_without("panicked");
    stack.api.get("/products").send().await.expect(200);
}
