//! What the buyers did and what the edge answered them: every Idempotency-Key with the lines
//! it asked for and every order id it was answered with, the cancellations and returns asked,
//! and the errors seen on the way. The checks compare it with what the shop says afterwards.

use std::sync::{Arc, Mutex, PoisonError};

/// One placement: an Idempotency-Key and everything it was answered with.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The Idempotency-Key.
    pub key: String,
    /// The buyer (index) who placed it.
    pub buyer: usize,
    /// The request body (the same on every attempt).
    pub body: serde_json::Value,
    /// The order ids of its 2xx answers (the same one every time, if idempotency holds).
    pub answers: Vec<String>,
    /// Attempts that failed in a retryable way (transport error, 5xx, 429, key in use).
    pub retried: u32,
    /// The problem code of a 4xx refusal, if it was refused.
    pub refused: Option<String>,
    /// Sent once more after it was answered, on purpose, to see the same order again.
    pub repeated: bool,
    /// What the last failed attempt got (status and problem code, or the transport error).
    pub last_error: Option<String>,
}

impl Placement {
    /// The order it was answered with first.
    pub fn order_id(&self) -> Option<&str> {
        self.answers.first().map(String::as_str)
    }
}

/// Errors the buyers saw at the edge.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeErrors {
    /// 5xx answers of every kind.
    pub server_errors: u64,
    /// Of those, 500 (an outage should be 503, never 500).
    pub internal_errors: u64,
    /// Requests that got no answer (connection refused or reset, timeout).
    pub transport_errors: u64,
}

/// Everything the buyers did.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every placement, in the order they were started.
    pub placements: Vec<Placement>,
    /// Cancellations asked for, and those the shop answered 200.
    pub cancels_asked: u64,
    /// Cancellations answered 200.
    pub cancels_done: u64,
    /// Cancellations refused, by status and problem code (`409 not_cancellable`: shipped).
    pub cancels_refused: std::collections::BTreeMap<String, u64>,
    /// Returns asked for.
    pub returns_asked: u64,
    /// Returns answered 200.
    pub returns_done: u64,
    /// Errors seen.
    pub errors: EdgeErrors,
}

/// The ledger, shared by every buyer.
#[derive(Debug, Clone, Default)]
pub struct SharedLedger(Arc<Mutex<Ledger>>);

impl SharedLedger {
    /// Runs `change` on the ledger.
    pub fn with<T>(&self, change: impl FnOnce(&mut Ledger) -> T) -> T {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts a placement; returns its index.
    pub fn start(&self, key: String, buyer: usize, body: serde_json::Value) -> usize {
        self.with(|ledger| {
            ledger.placements.push(Placement {
                key,
                buyer,
                body,
                ..Placement::default()
            });
            ledger.placements.len() - 1
        })
    }

    /// Describes a failed attempt for the report.
    pub fn describe(outcome: &Result<crate::api::Reply, reqwest::Error>) -> String {
        match outcome {
            Ok(reply) => format!("{} {}", reply.status.as_u16(), reply.code()),
            Err(error) if error.is_timeout() => "timed out".to_owned(),
            Err(_) => "no answer".to_owned(),
        }
    }

    /// Counts a failed request by what failed.
    pub fn count_error(&self, outcome: &Result<crate::api::Reply, reqwest::Error>) {
        self.with(|ledger| match outcome {
            Err(_) => ledger.errors.transport_errors += 1,
            Ok(reply) if reply.status.is_server_error() => {
                ledger.errors.server_errors += 1;
                if reply.status == reqwest::StatusCode::INTERNAL_SERVER_ERROR {
                    ledger.errors.internal_errors += 1;
                }
            }
            Ok(_) => {}
        });
    }

    /// A copy of the ledger as it stands.
    pub fn snapshot(&self) -> Ledger {
        self.with(|ledger| Ledger {
            placements: ledger.placements.clone(),
            cancels_asked: ledger.cancels_asked,
            cancels_done: ledger.cancels_done,
            cancels_refused: ledger.cancels_refused.clone(),
            returns_asked: ledger.returns_asked,
            returns_done: ledger.returns_done,
            errors: ledger.errors,
        })
    }
}
