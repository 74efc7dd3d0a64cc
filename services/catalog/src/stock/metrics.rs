//! The worker's counters, on the global OpenTelemetry meter `shop.catalog` (a no-op until the
//! process configures a meter provider). Dead letters and retries are counted by the platform's
//! consumer runner (`messaging.process.dead_lettered`, `messaging.process.retries`).

use opentelemetry::{KeyValue, metrics::Counter};

use super::{command::Work, ledger::Outcome, store::Applied};

/// The worker's instruments. Created when the worker is built, after telemetry is set up, so
/// that they bind to the configured provider.
#[derive(Clone, Debug)]
pub struct Metrics {
    applied: Counter<u64>,
    batch_failures: Counter<u64>,
}

impl Metrics {
    /// The instruments, from the global meter. The failure counter starts at 0 for each kind
    /// of work, so that it is served (and `increase` sees its first failure) before any fails.
    pub fn new() -> Self {
        let meter = opentelemetry::global::meter("shop.catalog");
        let batch_failures = meter
            .u64_counter("catalog.stock.batch_failures")
            .with_description("Stock batch transactions that failed and were retried")
            .build();
        for work in [Work::Reserve, Work::Release] {
            batch_failures.add(0, &[KeyValue::new("work", label(work))]);
        }
        Self {
            applied: meter
                .u64_counter("catalog.stock.applied")
                .with_description("Stock messages applied, by outcome")
                .build(),
            batch_failures,
        }
    }

    /// Counts what a batch did.
    pub fn applied(&self, work: Work, applied: &[Applied]) {
        for one in applied {
            let outcome = match one {
                Applied::Duplicate => "duplicate",
                Applied::Done(Outcome::Reserved) => "reserved",
                Applied::Done(Outcome::Rejected(_)) => "rejected",
                Applied::Done(Outcome::AlreadyReserved | Outcome::AlreadyRejected(_)) => "repeated",
                Applied::Done(Outcome::Released(_)) => "released",
                Applied::Done(Outcome::AlreadyReleased) => "repeated_release",
            };
            self.applied.add(
                1,
                &[KeyValue::new("work", label(work)), KeyValue::new("outcome", outcome)],
            );
        }
    }

    /// Counts a failed batch transaction.
    pub fn batch_failed(&self, work: Work) {
        self.batch_failures.add(1, &[KeyValue::new("work", label(work))]);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn label(work: Work) -> &'static str {
    match work {
        Work::Reserve => "reserve",
        Work::Release => "release",
    }
}
