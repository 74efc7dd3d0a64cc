//! HTTP server spans as the OpenTelemetry HTTP conventions name them: `METHOD /route/{template}`
//! (`POST /api/v1/orders`, `GET /api/v1/orders/{id}`), with `http.request.method`,
//! `http.route`, `url.path` and `http.response.status_code`. The span is opened before routing
//! ([`server_span`], in the outermost layer) and named once the router has matched the route
//! ([`record_route`], a route layer), so a request no route matches keeps the bare method as
//! its name, as the conventions ask. Status is Error for 5xx only: a 4xx is the client's
//! mistake, answered correctly. A signed-in caller is recorded on it as `enduser.id`
//! ([`super::record_end_user`]).
//!
//! It is the one span a request makes at the edge: handlers open none of their own (what
//! they would carry, the route's ids and the caller, is on this span), because at tens of
//! thousands of requests a second each span costs measurable time in formatting and
//! recording its fields.

use http::{Method, Request, StatusCode};
use opentelemetry::trace::TraceContextExt as _;
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::propagation;

/// Paths the kubelet probes every few seconds: no span (a trace each would bury the others).
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// The span of one request, joined to the caller's trace through its W3C headers;
/// `request_id` is the id the edge gave the request (echoed to the client).
pub fn server_span<B>(request: &Request<B>, request_id: &str) -> Span {
    let path = request.uri().path();
    if PROBES.contains(&path) {
        return Span::none();
    }
    let method = request.method();
    let span = tracing::info_span!(
        "http.server",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = Empty,
        url.path = %path,
        http.response.status_code = Empty,
        request_id = %request_id,
        enduser.id = Empty,
        trace_id = Empty,
    );
    propagation::set_remote_parent(&span, propagation::extract_http(request.headers()));
    span
}

/// Names the current request span after the route template that matched (`/api/v1/orders/{id}`).
pub fn record_route(method: &Method, route: &str) {
    let span = Span::current();
    let name = format!("{method} {route}");
    span.record("http.route", route);
    span.record("otel.name", name.as_str());
    // The OpenTelemetry span was started when its parent and trace id were set
    // ([`server_span`]), and the layer applies `otel.name` only to spans not started yet: the
    // started span is renamed itself, or it would be exported as the bare method.
    span.context().span().update_name(name);
}

/// Records the response status on the request span; Error for a 5xx.
pub fn record_response(span: &Span, status: StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}
