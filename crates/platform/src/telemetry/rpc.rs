//! gRPC spans, named and attributed as the OpenTelemetry RPC conventions say: the span name is
//! the full method (`shop.order.v1.OrderService/PlaceOrder`), with `rpc.system`,
//! `rpc.service`, `rpc.method` and `rpc.grpc.status_code`. The server span is made by the
//! server's trace layer ([`crate::grpc::server`]), the client span by every call through a
//! [`crate::grpc::client::GrpcChannel`]; the client injects its own span's context, so the
//! server span is its child and a service graph gets its edges.
//!
//! Status is Error only for codes that mean the service failed (see [`is_failure`]); a refusal
//! such as NOT_FOUND or UNAUTHENTICATED is the service doing its job, so it stays Unset, on
//! both sides of the call.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use tonic::{Code, body::Body};
use tracing::{Span, field::Empty};

use super::{metrics::RpcTimer, propagation};

/// `(service, method)` of a gRPC path such as `/shop.order.v1.OrderService/PlaceOrder`.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix('/')?.split_once('/')
}

/// Health checks and reflection: the kubelet and the gateway's readiness probe call them every
/// few seconds, and a trace for each would bury the ones people look for. They get no span.
pub fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// Whether `code` means the service failed (status Error), per the conventions' server table:
/// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. Every other
/// code is an answer the caller can act on (not found, invalid, unauthenticated, …).
pub fn is_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The span of one call served, joined to the caller's trace through its W3C headers.
pub fn server_span<B>(request: &http::Request<B>) -> Span {
    let path = request.uri().path();
    if is_infrastructure(path) {
        return Span::none();
    }
    let (service, method) = split_path(path).unwrap_or(("", path));
    // A root of its own, whatever span is current: over the network the call runs in the
    // server's connection task, but a call in process (`grpc::in_process`) runs in the caller's
    // task, whose spans would otherwise become its ancestors in the log lines. Its trace parent
    // is the caller's span, from the headers, either way.
    let span = tracing::info_span!(
        parent: None,
        "grpc.server",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
        enduser.id = Empty,
        trace_id = Empty,
    );
    propagation::set_remote_parent(&span, propagation::extract_http(request.headers()));
    span
}

/// The span of one outgoing call, a child of the current span. Enter it while injecting the
/// trace context, so the server's span becomes its child.
pub fn client_span(path: &str) -> Span {
    if is_infrastructure(path) {
        return Span::none();
    }
    let (service, method) = split_path(path).unwrap_or(("", path));
    tracing::info_span!(
        "grpc.client",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
    )
}

/// The `grpc-status` in `headers` (a trailers-only response, or the trailers), if any.
pub fn status_in(headers: &HeaderMap) -> Option<Code> {
    let raw = headers.get("grpc-status")?.to_str().ok()?;
    raw.parse::<i32>().ok().map(Code::from)
}

/// Records the call's status code on `span`, and Error when it is a failure.
pub fn record_code(span: &Span, code: Code, message: Option<&str>) {
    span.record("rpc.grpc.status_code", code as i32);
    if is_failure(code) {
        span.record("otel.status_code", "error");
        if let Some(message) = message {
            span.record("otel.status_description", message);
        }
    }
}

/// Records the status a response carries in its headers or trailers; `false` if none.
pub fn record_headers(span: &Span, headers: &HeaderMap) -> bool {
    match status_in(headers) {
        Some(code) => {
            let message = headers.get("grpc-message").and_then(|value| value.to_str().ok());
            record_code(span, code, message);
            true
        }
        None => false,
    }
}

/// Keeps a client span open until the response body ends, and records the status code its
/// trailers carry (a unary call's status arrives after the message); finishes the call's
/// [`RpcTimer`] with it too, if any.
pub(crate) struct TracedBody {
    inner: Body,
    span: Span,
    timer: Option<RpcTimer>,
}

impl TracedBody {
    /// `inner`, reporting to `span`.
    pub(crate) fn wrap(inner: Body, span: Span) -> Body {
        Self::wrap_timed(inner, span, None)
    }

    /// `inner`, reporting to `span` and `timer`.
    pub(crate) fn wrap_timed(inner: Body, span: Span, timer: Option<RpcTimer>) -> Body {
        Body::new(Self { inner, span, timer })
    }

    fn finish(&mut self, code: Code) {
        if let Some(timer) = &mut self.timer {
            timer.finish(code);
        }
    }
}

impl http_body::Body for TracedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    record_headers(&self.span, trailers);
                    if let Some(code) = status_in(trailers) {
                        self.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(status))) => {
                record_code(&self.span, status.code(), Some(status.message()));
                self.finish(status.code());
            }
            // The body ended without trailers: no status, which gRPC calls UNKNOWN.
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/shop.order.v1.OrderService/PlaceOrder"),
            Some(("shop.order.v1.OrderService", "PlaceOrder"))
        );
        assert_eq!(split_path("nonsense"), None);
        assert!(is_infrastructure("/grpc.health.v1.Health/Check"));
        assert!(!is_infrastructure("/shop.order.v1.OrderService/PlaceOrder"));
    }

    #[test]
    fn only_service_failures_are_errors() {
        for code in [
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(is_failure(code), "{code:?}");
        }
        for code in [
            Code::Ok,
            Code::NotFound,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::OutOfRange,
            Code::Cancelled,
        ] {
            assert!(!is_failure(code), "{code:?}");
        }
    }
}
