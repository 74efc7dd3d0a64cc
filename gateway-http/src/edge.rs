//! Edge middleware that is not a tower-http layer: identity headers a client sends are removed
//! (only the gateway sets identity, from a verified token), and every error response that is
//! not problem+json yet (404 for unknown routes, 405, 413 from the body limit, 408 from the
//! timeout) becomes one, so clients see one error format. The request's span is named after
//! the route that matched.

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::problem::{ApiError, PROBLEM_JSON, default_code};

/// Removes every `x-shop-*` header from the request: identity is never taken from a client.
pub async fn strip_identity_headers(mut request: Request, next: Next) -> Response {
    let forged: Vec<_> = request
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("x-shop-"))
        .cloned()
        .collect();
    for name in forged {
        request.headers_mut().remove(name);
    }
    next.run(request).await
}

/// Names the request's span `METHOD /route/{template}` once the router has matched a route (a
/// route layer: the span itself is opened before routing, by the trace layer).
pub async fn name_span_after_route(request: Request, next: Next) -> Response {
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        shop_platform::telemetry::http::record_route(request.method(), route.as_str());
    }
    next.run(request).await
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
