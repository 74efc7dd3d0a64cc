//! What the load measured: per operation, a latency histogram (microseconds, HdrHistogram) and
//! a count per outcome (the HTTP status, or `error` for a transport failure), and the summary
//! of them that the table, the JSON and the plot show.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency the histograms hold exactly (longer ones are clamped to it).
const MAX_LATENCY_MICROS: u64 = 120_000_000;

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// An HTTP reply with this status.
    Status(u16),
    /// No reply: the connection failed or the request timed out.
    Error,
}

impl Outcome {
    /// Whether it counts as a success (a 2xx reply).
    pub fn is_success(self) -> bool {
        matches!(self, Self::Status(status) if (200..300).contains(&status))
    }

    fn label(self) -> String {
        match self {
            Self::Status(status) => status.to_string(),
            Self::Error => "error".to_owned(),
        }
    }
}

/// One operation's raw figures.
#[derive(Debug)]
struct Operation {
    latencies: Histogram<u64>,
    outcomes: BTreeMap<Outcome, u64>,
}

impl Operation {
    fn new() -> Self {
        Self {
            latencies: histogram(),
            outcomes: BTreeMap::new(),
        }
    }
}

/// An empty latency histogram: three significant digits from 1 µs to two minutes (about
/// 200 KB), exact enough for a p99.
#[allow(clippy::expect_used)] // Constant bounds, valid by construction.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("1 µs to 2 min with 3 digits is valid")
}

/// The recorder every load task writes into; the progress line reads its totals.
#[derive(Debug, Default)]
pub struct Recorder {
    operations: Mutex<BTreeMap<&'static str, Operation>>,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl Recorder {
    /// Records one request of `operation` that took `latency`.
    pub fn record(&self, operation: &'static str, latency: Duration, outcome: Outcome) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_MICROS);
        {
            let mut operations = self.operations.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = operations.entry(operation).or_insert_with(Operation::new);
            // In bounds by the clamp above.
            let _ = entry.latencies.record(micros);
            *entry.outcomes.entry(outcome).or_default() += 1;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_success() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests recorded so far, and how many of them did not succeed.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// The summary of every operation, with throughput over `elapsed`; `all` first when there
    /// is more than one operation.
    pub fn summarize(&self, elapsed: Duration) -> Vec<Summary> {
        let operations = self.operations.lock().unwrap_or_else(PoisonError::into_inner);
        let mut summaries: Vec<Summary> = operations
            .iter()
            .map(|(name, operation)| Summary::of(name, &operation.latencies, &operation.outcomes, elapsed))
            .collect();
        if operations.len() > 1 {
            let mut latencies = histogram();
            let mut outcomes = BTreeMap::new();
            for operation in operations.values() {
                let _ = latencies.add(&operation.latencies);
                for (outcome, count) in &operation.outcomes {
                    *outcomes.entry(*outcome).or_default() += count;
                }
            }
            summaries.insert(0, Summary::of("all", &latencies, &outcomes, elapsed));
        }
        summaries
    }
}

/// One operation's figures, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The operation's name (`all` for every operation together).
    pub operation: String,
    /// Requests made.
    pub count: u64,
    /// Of them, answered 2xx.
    pub ok: u64,
    /// Requests per second over the measured time.
    pub throughput: f64,
    /// Latency percentiles and maximum, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// Requests per outcome: the HTTP status, or `error`.
    pub status: BTreeMap<String, u64>,
    /// The latency distribution for the plot: (latency in ms, fraction of requests at most that
    /// slow), increasing.
    #[serde(skip)]
    pub cdf: Vec<(f64, f64)>,
}

impl Summary {
    fn of(name: &str, latencies: &Histogram<u64>, outcomes: &BTreeMap<Outcome, u64>, elapsed: Duration) -> Self {
        let count = latencies.len();
        let millis = |micros: u64| micros as f64 / 1_000.0;
        let cdf = if count == 0 {
            Vec::new()
        } else {
            latencies
                .iter_quantiles(1)
                .map(|step| (millis(step.value_iterated_to()), step.quantile_iterated_to()))
                .collect()
        };
        Self {
            operation: name.to_owned(),
            count,
            ok: outcomes
                .iter()
                .filter(|(outcome, _)| outcome.is_success())
                .map(|(_, count)| count)
                .sum(),
            throughput: per_second(count, elapsed),
            p50_ms: millis(latencies.value_at_quantile(0.50)),
            p90_ms: millis(latencies.value_at_quantile(0.90)),
            p99_ms: millis(latencies.value_at_quantile(0.99)),
            max_ms: millis(latencies.max()),
            status: outcomes
                .iter()
                .map(|(outcome, count)| (outcome.label(), *count))
                .collect(),
            cdf,
        }
    }
}

/// `count` per second over `elapsed` (0 over no time).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_counts_and_throughput_come_from_what_was_recorded() {
        let recorder = Recorder::default();
        for ms in 1..=100 {
            recorder.record("read", Duration::from_millis(ms), Outcome::Status(200));
        }
        recorder.record("read", Duration::from_secs(2), Outcome::Status(503));
        recorder.record("write", Duration::from_millis(7), Outcome::Error);
        let summaries = recorder.summarize(Duration::from_secs(10));
        let names: Vec<&str> = summaries.iter().map(|s| s.operation.as_str()).collect();
        assert_eq!(names, ["all", "read", "write"]);

        let read = &summaries[1];
        assert_eq!(read.count, 101);
        assert_eq!(read.ok, 100);
        assert!((read.throughput - 10.1).abs() < 1e-9);
        // 101 samples: the 51st, 91st and 100th; HdrHistogram with 3 significant digits is
        // within 0.1 %.
        assert!((read.p50_ms - 51.0).abs() < 0.1, "{}", read.p50_ms);
        assert!((read.p90_ms - 91.0).abs() < 0.1, "{}", read.p90_ms);
        assert!((read.p99_ms - 100.0).abs() < 0.1, "{}", read.p99_ms);
        assert!((read.max_ms - 2_000.0).abs() < 2.0, "{}", read.max_ms);
        assert_eq!(read.status["200"], 100);
        assert_eq!(read.status["503"], 1);
        assert_eq!(read.cdf.last().unwrap().1, 1.0);

        let all = &summaries[0];
        assert_eq!(all.count, 102);
        assert_eq!(all.status["error"], 1);
        assert_eq!(recorder.totals(), (102, 2));
    }

    #[test]
    fn nothing_recorded_gives_an_empty_summary() {
        assert!(Recorder::default().summarize(Duration::from_secs(1)).is_empty());
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }
}
