//! Domain errors, mapped ONCE to gRPC statuses. Services return [`ServiceError`]; the stable
//! machine code travels in the `x-shop-error-code` metadata entry (and `x-shop-retry-after` for
//! rate limits), which the gateway turns into the problem+json `code`. Unexpected errors are
//! logged with their whole cause chain and reach the caller only as a generic INTERNAL, so no
//! internals leak.

use std::time::Duration;

use tonic::{Code, Status, metadata::MetadataValue};

/// The metadata entry carrying the machine error code.
pub const ERROR_CODE_METADATA: &str = "x-shop-error-code";
/// The metadata entry carrying whole seconds until a rate-limited call may succeed.
pub const RETRY_AFTER_METADATA: &str = "x-shop-retry-after";

/// A failure a service reports to its caller.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input: INVALID_ARGUMENT.
    #[error("{message}")]
    InvalidArgument {
        /// Machine code, e.g. `invalid_argument`, `weak_password`.
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// No identity on a call that needs one: UNAUTHENTICATED.
    #[error("{message}")]
    Unauthenticated {
        /// Machine code, e.g. `unauthenticated`, `invalid_credentials`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Not allowed for this caller: PERMISSION_DENIED.
    #[error("{message}")]
    PermissionDenied {
        /// Machine code: `forbidden` ([`Self::forbidden`]), or a precise one such as
        /// `invalid_credentials` when a confirming password is wrong.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// No such resource, or another user's: NOT_FOUND.
    #[error("{message}")]
    NotFound {
        /// Machine code: `not_found` ([`Self::not_found`]), or a precise one such as
        /// `product_not_found` for a product named in a request about something else.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Conflicts with an existing resource: ALREADY_EXISTS.
    #[error("{message}")]
    AlreadyExists {
        /// Machine code, e.g. `email_taken`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Not allowed in the resource's current state: FAILED_PRECONDITION.
    #[error("{message}")]
    FailedPrecondition {
        /// Machine code, e.g. `not_cancellable`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Concurrent work on the same thing; retry later: ABORTED.
    #[error("{message}")]
    Aborted {
        /// Machine code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Rate limited: RESOURCE_EXHAUSTED with a retry delay.
    #[error("too many requests; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// A dependency is down: UNAVAILABLE.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure: INTERNAL, details only in the log.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ServiceError {
    /// Bad input with the generic `invalid_argument` code.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            code: "invalid_argument",
            message: message.into(),
        }
    }

    /// Not allowed for this caller, with the generic `forbidden` code.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::PermissionDenied {
            code: "forbidden",
            message: message.into(),
        }
    }

    /// No such resource, with the generic `not_found` code.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            code: "not_found",
            message: message.into(),
        }
    }

    /// The call needs a signed-in caller.
    pub fn unauthenticated() -> Self {
        Self::Unauthenticated {
            code: "unauthenticated",
            message: "sign in first".into(),
        }
    }

    /// The gRPC code this error maps to.
    pub fn grpc_code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::Unauthenticated { .. } => Code::Unauthenticated,
            Self::PermissionDenied { .. } => Code::PermissionDenied,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Aborted { .. } => Code::Aborted,
            Self::RateLimited { .. } => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Unexpected(_) => Code::Internal,
        }
    }

    /// The stable machine code.
    pub fn machine_code(&self) -> &'static str {
        match self {
            Self::InvalidArgument { code, .. }
            | Self::Unauthenticated { code, .. }
            | Self::PermissionDenied { code, .. }
            | Self::NotFound { code, .. }
            | Self::AlreadyExists { code, .. }
            | Self::FailedPrecondition { code, .. }
            | Self::Aborted { code, .. } => code,
            // The code the protobuf contracts document (shop.user.v1).
            Self::RateLimited { .. } => "too_many_requests",
            Self::Unavailable(_) => "unavailable",
            Self::Unexpected(_) => "internal",
        }
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Unexpected(anyhow::Error::new(error).context("database"))
    }
}

/// A group committer that stopped (the service is shutting down) wrote nothing: the caller
/// may retry, on this replica once it is back or on another.
impl From<crate::group_commit::Stopped> for ServiceError {
    fn from(stopped: crate::group_commit::Stopped) -> Self {
        Self::Unavailable(stopped.to_string())
    }
}

/// What callers are told when a dependency is down (details only in the log).
const DEPENDENCY_DOWN: &str = "a dependency is unavailable; try again shortly";

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        // An outage of the database, broker, cache or another service is UNAVAILABLE, never
        // INTERNAL: the caller may retry, and the gateway answers 503 with Retry-After.
        let error = match error {
            ServiceError::Unexpected(cause) if crate::fault::is_transient(&cause) => {
                tracing::warn!(error = format!("{cause:#}"), "a dependency is unavailable");
                ServiceError::Unavailable(DEPENDENCY_DOWN.to_owned())
            }
            other => other,
        };
        let message = match &error {
            ServiceError::Unexpected(cause) => {
                tracing::error!(error = format!("{cause:#}"), "unexpected failure");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut status = Status::new(error.grpc_code(), message);
        status
            .metadata_mut()
            .insert(ERROR_CODE_METADATA, MetadataValue::from_static(error.machine_code()));
        if let ServiceError::RateLimited { retry_after } = &error {
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = MetadataValue::try_from(seconds.as_str()) {
                status.metadata_mut().insert(RETRY_AFTER_METADATA, value);
            }
        }
        status
    }
}

/// What a service tells its caller when its own call to another service failed: UNAVAILABLE
/// (retryable) when that service could not be reached, did not answer in time, or was
/// overloaded (see [`crate::fault::is_transient_status`]), or when the call was cancelled;
/// INTERNAL otherwise (our request was wrong: a bug), with the details in the log only.
pub fn upstream_failure(service: &str, status: &Status) -> ServiceError {
    if crate::fault::is_transient_status(status) || status.code() == Code::Cancelled {
        tracing::warn!(%service, code = ?status.code(), message = status.message(), "upstream call failed");
        ServiceError::Unavailable(format!("the {service} is unavailable; retry later"))
    } else {
        ServiceError::Unexpected(anyhow::anyhow!(
            "the {service} answered {:?}: {}",
            status.code(),
            status.message()
        ))
    }
}

/// The machine code a status carries (for the gateway and for clients' tests).
pub fn machine_code(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(ERROR_CODE_METADATA)
        .and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_carries_its_code_and_machine_code() {
        let status = Status::from(ServiceError::FailedPrecondition {
            code: "not_cancellable",
            message: "the order has shipped".into(),
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(machine_code(&status), Some("not_cancellable"));
        assert_eq!(status.message(), "the order has shipped");
    }

    #[test]
    fn refusals_may_carry_a_precise_code() {
        let status = Status::from(ServiceError::PermissionDenied {
            code: "invalid_credentials",
            message: "the password is wrong".into(),
        });
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(machine_code(&status), Some("invalid_credentials"));
        let status = Status::from(ServiceError::NotFound {
            code: "product_not_found",
            message: "no such product".into(),
        });
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(machine_code(&status), Some("product_not_found"));
    }

    #[test]
    fn unexpected_errors_hide_their_details() {
        let status = Status::from(ServiceError::Unexpected(anyhow::anyhow!("password=hunter2 at db:5432")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
        assert_eq!(machine_code(&status), Some("internal"));
    }

    #[test]
    fn outages_are_unavailable_not_internal() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let db = sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::Io(refused),
        )));
        let status = Status::from(ServiceError::from(db));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(machine_code(&status), Some("unavailable"));
        assert!(!status.message().contains("5432"));
        let bug = sea_orm::DbErr::Custom("2 of 3 stock updates applied".into());
        assert_eq!(Status::from(ServiceError::from(bug)).code(), Code::Internal);
    }

    #[test]
    fn upstream_outages_are_unavailable_and_refusals_internal() {
        for status in [
            Status::unavailable("down"),
            Status::deadline_exceeded("slow"),
            Status::cancelled("gone"),
        ] {
            assert_eq!(upstream_failure("catalog", &status).grpc_code(), Code::Unavailable);
        }
        let refused = upstream_failure("catalog", &Status::invalid_argument("bad request"));
        assert_eq!(refused.grpc_code(), Code::Internal);
        // An UNKNOWN a server sent is a bug; one made up for a broken connection is an outage
        // (crate::fault's tests cover the latter).
        assert_eq!(
            upstream_failure("catalog", &Status::unknown("boom")).grpc_code(),
            Code::Internal
        );
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let status = Status::from(ServiceError::RateLimited {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(machine_code(&status), Some("too_many_requests"));
        assert_eq!(
            status
                .metadata()
                .get(RETRY_AFTER_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
}
