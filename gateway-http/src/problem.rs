//! Errors at the edge: every failure leaves the gateway as RFC 9457 `application/problem+json`
//! with a stable machine `code`. gRPC statuses map to HTTP statuses through ONE table
//! ([`http_status`]); the services' machine codes (`x-shop-error-code`) pass through; server-side
//! failures never reveal their details.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use shop_platform::grpc::error::{ERROR_CODE_METADATA, RETRY_AFTER_METADATA};
use tonic::Code;
use utoipa::IntoResponses;

/// The problem+json media type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine code, e.g. `out_of_stock`.
    pub code: String,
    /// What went wrong, for people.
    pub detail: String,
    /// Seconds until a retry may succeed (429, 503).
    pub retry_after: Option<u64>,
}

/// The problem+json body (RFC 9457 members plus `code`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:shop:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the status.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
    /// The stable machine code programs branch on.
    pub code: String,
}

impl ApiError {
    /// An error with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 with code `invalid_argument` (or a more precise one).
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401 with `code`.
    pub fn unauthorized(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 429 with a `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "too many requests")
        }
    }

    /// The body of this error.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:shop:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// THE table from gRPC status codes to HTTP statuses.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        // A connection that broke during the call (the service was killed or cut off) is an
        // outage like a refused one: 503 with Retry-After, not 500.
        let code = if shop_platform::fault::is_transport_failure(&status) {
            Code::Unavailable
        } else {
            status.code()
        };
        let http = http_status(code);
        if http == StatusCode::TOO_MANY_REQUESTS {
            crate::limits::count_rejection(crate::limits::Limit::Service);
        }
        let metadata = |key| status.metadata().get(key).and_then(|value| value.to_str().ok());
        let code = metadata(ERROR_CODE_METADATA)
            .map(str::to_owned)
            .unwrap_or_else(|| default_code(http).to_owned());
        let retry_after = metadata(RETRY_AFTER_METADATA).and_then(|raw| raw.parse().ok());
        let detail = if http.is_server_error() {
            // Server-side failures say what kind, never why: details stay in the services' logs.
            tracing::warn!(grpc_code = ?status.code(), message = status.message(), "upstream failure");
            match http {
                StatusCode::SERVICE_UNAVAILABLE => "a service is temporarily unavailable; retry later",
                StatusCode::GATEWAY_TIMEOUT => "a service took too long to answer",
                _ => "the request failed on the server",
            }
            .to_owned()
        } else {
            status.message().to_owned()
        };
        Self {
            status: http,
            code,
            detail,
            retry_after: retry_after.or((http == StatusCode::SERVICE_UNAVAILABLE).then_some(1)),
        }
    }
}

/// The machine code of an HTTP status when nothing more precise is known.
pub fn default_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_argument",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::NOT_IMPLEMENTED => "not_implemented",
        _ if status.is_client_error() => "invalid_request",
        _ => "internal",
    }
}

// The documented error responses of the routes, next to the type they carry: they only
// describe responses in the OpenAPI document and are never built, hence `allow(dead_code)`.

/// Errors every route may answer.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)]
pub enum Always {
    /// Too many requests from this client or user; retry after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json")]
    RateLimited(Problem),
    /// A service behind the gateway is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// Errors of routes that read a JSON body.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// Malformed JSON, a missing or ill-typed field, or a value out of range.
    #[response(status = 400, content_type = "application/problem+json")]
    Invalid(Problem),
    /// The body was not received within the body timeout; the connection is closed.
    #[response(status = 408, content_type = "application/problem+json")]
    TooSlow(Problem),
    /// The body is larger than the gateway accepts.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not sent as `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
}

/// A malformed id in the path, or a bad query parameter.
#[derive(Debug, IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct BadInput(Problem);

/// The token is missing, invalid, expired or revoked (🔒 routes).
#[derive(Debug, IntoResponses)]
#[response(status = 401, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Unauthenticated(Problem);

/// The caller's role does not allow this.
#[derive(Debug, IntoResponses)]
#[response(status = 403, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Forbidden(Problem);

/// No such resource, or another user's.
#[derive(Debug, IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct NotFound(Problem);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_the_contract() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::FailedPrecondition), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn service_codes_pass_through_and_internals_do_not() {
        let mut status = tonic::Status::failed_precondition("the order has shipped");
        status.metadata_mut().insert(
            ERROR_CODE_METADATA,
            "not_cancellable".parse().unwrap_or_else(|_| unreachable!()),
        );
        let error = ApiError::from(status);
        assert_eq!(
            (error.status, error.code.as_str()),
            (StatusCode::CONFLICT, "not_cancellable")
        );
        assert_eq!(error.detail, "the order has shipped");

        let error = ApiError::from(tonic::Status::internal("connection to db-7:5432 refused"));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.detail.contains("db-7"));
    }

    /// What tonic's channel wraps a connection broken mid-call in.
    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Transport(#[source] std::io::Error);

    #[test]
    fn a_connection_broken_mid_call_is_503_with_retry_after() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let status = tonic::Status::from_error(Box::new(Transport(reset)));
        assert_eq!(status.code(), Code::Unknown);
        let response = ApiError::from(status).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        // UNKNOWN sent by a server is still a server failure.
        let sent = ApiError::from(tonic::Status::unknown("transport error"));
        assert_eq!(sent.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let mut status = tonic::Status::resource_exhausted("slow down");
        status
            .metadata_mut()
            .insert(RETRY_AFTER_METADATA, "42".parse().unwrap_or_else(|_| unreachable!()));
        let response = ApiError::from(status).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
