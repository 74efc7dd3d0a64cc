//! Transient or not: the one place that decides whether a failure is an outage of something we
//! depend on (the database, the broker, the cache, another service), which waiting out will
//! cure, or a failure that will happen again however often it is retried.
//!
//! Queue consumers hold a message and retry it while its failure is transient, and only count
//! (and eventually dead-letter) the other kind; gRPC handlers answer UNAVAILABLE instead of
//! INTERNAL for a transient failure, so callers and the gateway (503 with `Retry-After`) know
//! to try again.

use std::{error::Error as StdError, io};

use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, sqlx};

use crate::queue::QueueError;

/// True when some error in `error`'s chain is a transient outage (see the module docs).
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(is_transient_one)
}

/// True when `error` or one of its sources is a transient outage.
pub fn is_transient_error(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if is_transient_one(error) {
            return true;
        }
        next = error.source();
    }
    false
}

/// One link of a chain, without its sources.
fn is_transient_one(error: &(dyn StdError + 'static)) -> bool {
    if let Some(error) = error.downcast_ref::<DbErr>() {
        return is_transient_db(error);
    }
    if let Some(error) = error.downcast_ref::<sqlx::Error>() {
        return is_transient_sqlx(error);
    }
    if let Some(error) = error.downcast_ref::<QueueError>() {
        return matches!(error, QueueError::Unavailable(_) | QueueError::ChannelClosed);
    }
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        return is_transient_status(status);
    }
    if let Some(error) = error.downcast_ref::<io::Error>() {
        return is_transient_io(error.kind());
    }
    if let Some(error) = error.downcast_ref::<fred::error::Error>() {
        return matches!(
            error.kind(),
            fred::error::ErrorKind::IO
                | fred::error::ErrorKind::Timeout
                | fred::error::ErrorKind::Canceled
                | fred::error::ErrorKind::Backpressure
        );
    }
    error.is::<tokio::time::error::Elapsed>() || error.is::<Unavailable>()
}

/// True for database failures that another attempt later may not meet: the connection or the
/// pool is gone, the server is restarting or overloaded, or the transaction lost a race
/// (serialization failure, deadlock, SQLite busy). Constraint violations, bad SQL and decoding
/// errors are not transient.
pub fn is_transient_db(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => true,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => match runtime {
            RuntimeErr::SqlxError(error) => is_transient_sqlx(error),
            // sea-orm reports a broken connection it noticed itself as text.
            RuntimeErr::Internal(message) => {
                let message = message.to_ascii_lowercase();
                message.contains("connection") || message.contains("timed out")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        },
        _ => false,
    }
}

fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(error) => is_transient_io(error.kind()),
        sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs (and SQLite result codes) of failures that go away by themselves.
fn is_transient_sqlstate(code: &str) -> bool {
    // Class 08: connection exception. 40001 serialization failure, 40P01 deadlock, 53xxx
    // insufficient resources (too many connections), 57P01-57P03 shutdown / cannot connect
    // now, 55P03 lock not available. SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED (and their
    // extended codes, which keep the low byte).
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "55P03")
        || code.parse::<i64>().is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6))
}

fn is_transient_io(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | Interrupted
            | WouldBlock
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | AddrNotAvailable
    )
}

/// True for gRPC statuses that mean "not now" rather than "never": the service is down or
/// overloaded, or the deadline passed, or the connection broke mid-call.
pub fn is_transient_status(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::ResourceExhausted
    ) || is_transport_failure(status)
}

/// True when no server sent `status`: the client made it up because the connection failed
/// during the call (the server was killed, the link broke). tonic reports that as UNKNOWN
/// "transport error" with the transport failure as its source, whereas a status a server sent
/// has no source. It is an outage of that server, not a bug.
pub fn is_transport_failure(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unknown {
        return false;
    }
    let mut next = StdError::source(status);
    while let Some(error) = next {
        if error.is::<tonic::transport::Error>()
            || error.is::<hyper::Error>()
            || error.is::<h2::Error>()
            || error.is::<io::Error>()
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// A marker error for code that knows a failure is an outage without a typed cause, e.g. a
/// payment provider that does not answer: `anyhow::Error::new(Unavailable("…".into()))`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn sqlx_io(kind: io::ErrorKind) -> DbErr {
        DbErr::Conn(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(io::Error::from(kind)))))
    }

    #[test]
    fn lost_connections_are_transient() {
        assert!(is_transient_db(&sqlx_io(io::ErrorKind::ConnectionRefused)));
        assert!(is_transient_db(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
        assert!(is_transient_db(&DbErr::Exec(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::PoolTimedOut
        )))));
        let wrapped = anyhow::Error::new(sqlx_io(io::ErrorKind::ConnectionReset)).context("applying a batch");
        assert!(is_transient(&wrapped));
    }

    #[test]
    fn sqlstates_of_races_and_restarts_are_transient() {
        for code in ["08006", "08001", "40001", "40P01", "57P01", "53300", "5", "517", "6"] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "22003", "42P01", "19", "1"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn bugs_and_bad_data_are_not_transient() {
        assert!(!is_transient_db(&DbErr::Custom("2 of 3 stock updates applied".into())));
        assert!(!is_transient_db(&DbErr::RecordNotFound("order".into())));
        assert!(!is_transient(&anyhow::anyhow!("undecodable payload")));
    }

    /// What tonic's channel wraps a broken connection in.
    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Transport(#[source] io::Error);

    #[test]
    fn a_connection_broken_mid_call_is_transient_and_a_server_unknown_is_not() {
        let broken = tonic::Status::from_error(Box::new(Transport(io::Error::from(io::ErrorKind::ConnectionReset))));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert!(is_transport_failure(&broken));
        assert!(is_transient_status(&broken));
        let sent = tonic::Status::unknown("transport error");
        assert!(!is_transport_failure(&sent), "a server may send UNKNOWN itself");
        assert!(!is_transient_status(&sent));
    }

    #[test]
    fn broker_cache_and_upstream_outages_are_transient() {
        assert!(is_transient(&anyhow::Error::new(QueueError::Unavailable(
            "down".into()
        ))));
        assert!(!is_transient(&anyhow::Error::new(QueueError::Refused(
            "NOT_FOUND".into()
        ))));
        assert!(is_transient(&anyhow::Error::new(tonic::Status::unavailable(
            "catalog is down"
        ))));
        assert!(!is_transient(&anyhow::Error::new(tonic::Status::invalid_argument(
            "bad"
        ))));
        let provider = anyhow::Error::new(Unavailable("provider timed out".into())).context("capturing");
        assert!(is_transient(&provider));
    }
}
