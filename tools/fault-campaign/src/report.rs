//! The printed report: the faults as they happened, the orders, the stock account of every
//! product, and the checks with their figures.

use std::{fmt::Write as _, time::Duration};

use crate::{
    checks::{Check, Observed, StockRow, short, statuses},
    profile::{Fault, Profile, Service},
};

/// A fault as it happened.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// What.
    pub fault: Fault,
    /// When it started, from the start of ordering.
    pub started: Duration,
    /// When it was over (link restored, service listening again), from the same start.
    pub ended: Duration,
    /// What went wrong injecting it, if anything.
    pub error: Option<String>,
}

/// Everything the report shows.
#[derive(Debug)]
pub struct Report {
    /// The profile run.
    pub profile: Profile,
    /// Where the processes' logs are.
    pub log_dir: String,
    /// The faults.
    pub faults: Vec<FaultRecord>,
    /// What was observed.
    pub observed: Observed,
    /// The stock account.
    pub stock: Vec<StockRow>,
    /// The verdicts.
    pub checks: Vec<Check>,
    /// Exits of services the campaign did not cause.
    pub unplanned_exits: Vec<(Service, usize)>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let profile = &self.profile;
        let _ = writeln!(
            out,
            "fault campaign `{}`: {} buyers ordering for {} s, {} faults (process logs: {})",
            profile.name,
            profile.buyers,
            profile.ordering.as_secs(),
            profile.faults.len(),
            self.log_dir
        );

        let _ = writeln!(out, "\nfaults (seconds from the start of ordering)");
        let _ = writeln!(out, "  {:>7}  {:>7}  fault", "start", "end");
        for record in &self.faults {
            let error = record.error.as_deref().map(|e| format!("  [{e}]")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>7.1}  {:>7.1}  {}{error}",
                record.started.as_secs_f64(),
                record.ended.as_secs_f64(),
                record.fault
            );
        }
        if self.faults.is_empty() {
            let _ = writeln!(out, "  none");
        }
        let exits: Vec<String> = self
            .unplanned_exits
            .iter()
            .filter(|(_, exits)| *exits > 0)
            .map(|(service, exits)| format!("{service} ×{exits}"))
            .collect();
        let _ = writeln!(
            out,
            "  services that exited on their own (and were started again): {}",
            if exits.is_empty() {
                "none".to_owned()
            } else {
                exits.join(", ")
            }
        );

        let ledger = &self.observed.ledger;
        let retried: u64 = ledger.placements.iter().map(|p| u64::from(p.retried)).sum();
        let counts: Vec<String> = statuses(&self.observed.orders)
            .iter()
            .map(|(status, count)| format!("{status} {count}"))
            .collect();
        let _ = writeln!(out, "\norders");
        let _ = writeln!(out, "  by status: {}", counts.join(", "));
        let refused: Vec<String> = ledger
            .cancels_refused
            .iter()
            .map(|(refusal, count)| format!("{refusal} ×{count}"))
            .collect();
        let _ = writeln!(
            out,
            "  placements {}, retried attempts {retried}; cancels {} asked / {} done{}; returns {} asked / {} done",
            ledger.placements.len(),
            ledger.cancels_asked,
            ledger.cancels_done,
            if refused.is_empty() {
                String::new()
            } else {
                format!(" (refused: {})", refused.join(", "))
            },
            ledger.returns_asked,
            ledger.returns_done
        );
        let _ = writeln!(
            out,
            "  errors the buyers saw: {} 5xx (of which {} were 500), {} without an answer",
            ledger.errors.server_errors, ledger.errors.internal_errors, ledger.errors.transport_errors
        );

        let _ = writeln!(out, "\nstock");
        let _ = writeln!(
            out,
            "  {:<8}  {:>7}  {:>7}  {:>7}  {:>7}  {:>10}",
            "product", "initial", "left", "held", "pending", "difference"
        );
        for row in &self.stock {
            let _ = writeln!(
                out,
                "  {:<8}  {:>7}  {:>7}  {:>7}  {:>7}  {:>+10}",
                short(&row.product_id),
                row.initial,
                row.left,
                row.held,
                row.pending,
                row.difference()
            );
        }

        let _ = writeln!(out, "\nchecks");
        for check in &self.checks {
            let verdict = if check.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "  {verdict}  {:<72} {}", check.name, check.figures);
        }
        let failed = self.checks.iter().filter(|check| !check.passed).count();
        let _ = writeln!(
            out,
            "\n{}",
            if failed == 0 {
                "every check passed".to_owned()
            } else {
                format!("{failed} of {} checks failed", self.checks.len())
            }
        );
        out
    }
}
