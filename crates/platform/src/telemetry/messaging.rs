//! Work-queue spans as the OpenTelemetry messaging conventions shape them, so one trace follows
//! an order from the request that placed it through every queue hop:
//!
//! - the outbox relay opens a PRODUCER span `send <queue>` per message it publishes, a child of
//!   the context stored with the outbox row (the span that wrote it, e.g. `PlaceOrder`), and
//!   the message carries the producer span's context (no separate "create" span exists, so the
//!   send span is the message's creation context, as the conventions say);
//! - the consumer runner opens a CONSUMER span `process <queue>` per delivery, a child of that
//!   creation context and linked to it (the conventions require the link; the parent is allowed
//!   for single-message processing and keeps the whole order in one trace).
//!
//! Both carry `messaging.system`, `messaging.destination.name`, `messaging.operation.type`,
//! `messaging.operation.name` and `messaging.message.id`; consumers add what the message is
//! about (`shop.order.id`, `shop.product.ids`, `shop.outcome`) on the span while decoding and
//! applying it.

use std::fmt::Display;

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::propagation;
use crate::queue::Message;

/// The PRODUCER span of publishing `message` to `queue`, a child of the context in its headers.
/// Build the published message's headers inside it ([`propagation::inject_message`]).
pub fn send_span(system: &str, queue: &str, message: &Message) -> Span {
    let span = tracing::info_span!(
        "messaging.send",
        otel.name = %format!("send {queue}"),
        otel.kind = "producer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = %system,
        messaging.destination.name = %queue,
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.message.id = %message.id,
        shop.message.kind = %message.kind,
        trace_id = Empty,
    );
    propagation::set_remote_parent(&span, propagation::extract_message(&message.headers));
    span
}

/// The CONSUMER span of processing one delivery of `message` from `queue`: a child of, and
/// linked to, the message's creation context.
pub fn process_span(system: &str, queue: &str, message: &Message, delivery_count: u32) -> Span {
    let span = tracing::info_span!(
        "messaging.process",
        otel.name = %format!("process {queue}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = %system,
        messaging.destination.name = %queue,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.message.id = %message.id,
        shop.message.kind = %message.kind,
        shop.delivery_count = delivery_count,
        shop.order.id = Empty,
        shop.product.ids = Empty,
        shop.outcome = Empty,
        trace_id = Empty,
    );
    let creation = propagation::extract_message(&message.headers);
    let linked = creation.span().span_context().clone();
    propagation::set_remote_parent(&span, creation);
    if linked.is_valid() {
        span.add_link(linked);
    }
    span
}

/// Marks `span` failed (status Error) with `reason`.
pub fn record_failure(span: &Span, reason: &dyn Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", reason.to_string());
}
