//! Edge middleware that is not a tower-http layer: identity headers a client sends are removed
//! (only the gateway sets identity, from a verified token); a client's `X-Request-Id` is kept
//! only when it is short and printable (it is echoed, logged and forwarded to every service);
//! a request must name exactly one `Host` (RFC 9112 §3.2); and every error response that is
//! not problem+json yet (404 for unknown routes, 405, 413 from the body limit, 408 from the
//! timeout) becomes one, so clients see one error format. The request's span is named after
//! the route that matched.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::problem::{ApiError, PROBLEM_JSON, default_code};

/// The request id header.
pub const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` kept from a client; a longer one is replaced by a fresh id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Removes a client's `X-Request-Id` unless there is exactly one, of 1 to
/// [`MAX_REQUEST_ID_LEN`] visible ASCII characters (no spaces, no control characters), so the
/// id layer puts a fresh one in its place. The id is echoed to the client, written to every log
/// line and forwarded as gRPC metadata: unbounded or binary content would go everywhere.
pub async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let mut ids = request.headers().get_all(&REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (Some(id), None) => is_acceptable_request_id(id.as_bytes()),
        _ => false,
    };
    if !keep {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

/// Whether a client's request id may be kept.
pub fn is_acceptable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|byte| byte.is_ascii_graphic())
}

/// 413 `body_too_large` at once for a request whose declared `Content-Length` exceeds
/// `limit`, before any of the body is read (the extractors' own limit would first wait for the
/// body, which a client may send slowly, or never).
fn declared_oversize(limit: usize, request: &Request) -> Option<Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())?;
    if declared <= u64::try_from(limit).unwrap_or(u64::MAX) {
        return None;
    }
    let mut response = StatusCode::PAYLOAD_TOO_LARGE.into_response();
    // The body is not read: the connection cannot carry another request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// Reads the whole body (at most `limit` bytes) within `timeout` before the request goes on:
/// 408 `request_timeout` for a client that sends it too slowly (a slow body must not hold a
/// connection, a task and a buffer until the request timeout answers 504, which would blame
/// the services), 413 `body_too_large` beyond the limit. The connection is closed after either
/// answer, as the rest of the body is never read.
pub async fn read_body_within(timeout: Duration, limit: usize, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let refused = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => return next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(_elapsed) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body was not received within {} s", timeout.as_secs_f64()),
        ),
        Ok(Err(error)) if is_length_limit(&error) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        ),
        Ok(Err(_)) => ApiError::bad_request("invalid_body", "the request body could not be read"),
    };
    let mut response = refused.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Whether reading a body failed on its length limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// 400 `invalid_host` for a request without exactly one `Host`: RFC 9112 requires one in every
/// HTTP/1.1 request and forbids two (proxies and caches may pick different ones). HTTP/1.0
/// may omit it; HTTP/2 carries the authority in the request line instead.
fn without_one_host(request: &Request) -> Option<Response> {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let valid = match request.version() {
        axum::http::Version::HTTP_09 | axum::http::Version::HTTP_10 => hosts <= 1,
        axum::http::Version::HTTP_11 => hosts == 1,
        _ => hosts == 1 || (hosts == 0 && request.uri().authority().is_some()),
    };
    (!valid)
        .then(|| ApiError::bad_request("invalid_host", "a request must carry exactly one Host header").into_response())
}

/// Removes every `x-shop-*` header from the request: identity is never taken from a client.
fn strip_identity_headers(request: &mut Request) {
    let forged: Vec<_> = request
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("x-shop-"))
        .cloned()
        .collect();
    for name in forged {
        request.headers_mut().remove(name);
    }
}

/// The header rules, in one middleware (one layer per request instead of three): one `Host`
/// ([`without_one_host`]), a declared body within `body_limit` ([`declared_oversize`]), and
/// no identity headers from the client ([`strip_identity_headers`]).
pub async fn check_headers(body_limit: usize, mut request: Request, next: Next) -> Response {
    if let Some(refused) = without_one_host(&request).or_else(|| declared_oversize(body_limit, &request)) {
        return refused;
    }
    strip_identity_headers(&mut request);
    next.run(request).await
}

/// Names the request's span `METHOD /route/{template}` once the router has matched a route (a
/// route layer: the span itself is opened before routing, by the trace layer).
/// The template also goes on the response, for [`measure`].
pub async fn name_span_after_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    if let Some(route) = &route {
        shop_platform::telemetry::http::record_route(request.method(), route.as_str());
    }
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Records every request in `http.server.request.duration` (method, route template when one
/// matched, status code), whatever layer answered it.
pub async fn measure(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = response.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    shop_platform::telemetry::metrics::record_http_request(&method, route, response.status(), started);
    response
}

/// Turns bare error responses into problem+json.
pub async fn errors_as_problems(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == HeaderValue::from_static(PROBLEM_JSON));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no such resource",
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this resource",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        StatusCode::REQUEST_TIMEOUT => "the request took too long",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let (parts, _) = response.into_parts();
    let mut problem = ApiError::new(status, default_code(status), detail).into_response();
    // Keep headers set by inner layers (request id, Allow, Retry-After, CORS).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}
