//! The run's figures: the table printed for people, the same figures as JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    ceiling::Ceiling,
    options::Options,
    scenario::{flash_sale::FlashSaleFigures, listing::ListingFigures},
    stats::Summary,
    target::Shop,
};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `browse`, `flash-sale`, `read` or `listing`.
    pub scenario: &'static str,
    /// The shop: its URL, or `spawned one-process|services`.
    pub target: String,
    /// Connections (closed loop), or the most requests in flight (open loop).
    pub connections: usize,
    /// Open loop: steps started a second; none for a closed loop.
    pub rate: Option<f64>,
    /// Per operation (`all` first when there are several).
    pub operations: Vec<Summary>,
    /// The flash sale's own figures and invariant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash_sale: Option<FlashSaleFigures>,
    /// The listing's p99 by catalog size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing: Option<ListingFigures>,
    /// The ceiling measured in the same run (`--ceilings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
}

impl Report {
    /// The report of a run with `options` that measured `operations`.
    pub fn new(options: &Options, operations: Vec<Summary>) -> Self {
        Self {
            scenario: options.scenario.name(),
            target: Shop::describe(options),
            connections: options.connections,
            rate: options.rate,
            operations,
            flash_sale: None,
            listing: None,
            ceiling: None,
        }
    }

    /// Whether every check held (only the flash sale has checks).
    pub fn passed(&self) -> bool {
        self.flash_sale.as_ref().is_none_or(|figures| figures.invariant.holds)
    }

    /// The table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let pace = self
            .rate
            .map_or_else(|| "closed loop".to_owned(), |rate| format!("open loop at {rate}/s"));
        let _ = writeln!(
            out,
            "shop-load {}: {}, {} connections, {pace}",
            self.scenario, self.target, self.connections
        );
        out.push_str(&table(&self.operations));
        if let Some(figures) = &self.flash_sale {
            out.push_str(&figures.render());
        }
        if let Some(figures) = &self.listing {
            out.push_str(&figures.render());
        }
        if let Some(ceiling) = &self.ceiling {
            out.push('\n');
            match (&ceiling.skipped, ceiling.throughput) {
                (Some(reason), _) => {
                    let _ = writeln!(out, "ceiling ({}) skipped: {reason}", ceiling.kind);
                }
                (None, Some(throughput)) => {
                    let _ = writeln!(out, "ceiling ({}): {throughput:.0} {}", ceiling.kind, ceiling.unit);
                    if !ceiling.operations.is_empty() {
                        out.push_str(&table(&ceiling.operations));
                    }
                    for (figure, ratio) in &ceiling.ratios {
                        let _ = writeln!(out, "ratio shop/{} for {figure}: {ratio:.2}", ceiling.kind);
                    }
                }
                (None, None) => {}
            }
        }
        out
    }
}

/// One line per operation.
fn table(summaries: &[Summary]) -> String {
    let width = summaries
        .iter()
        .map(|s| s.operation.chars().count())
        .max()
        .unwrap_or(0)
        .max(26);
    let mut out = format!(
        "{:<width$} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}  status\n",
        "operation", "count", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for s in summaries {
        let status: Vec<String> = s.status.iter().map(|(code, count)| format!("{code}:{count}")).collect();
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}",
            s.operation,
            s.count,
            s.throughput,
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.max_ms,
            status.join(" ")
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{Outcome, Recorder};

    #[test]
    fn the_table_and_the_json_carry_the_same_figures() {
        let recorder = Recorder::default();
        recorder.record("GET /products/{id}", Duration::from_millis(2), Outcome::Status(200));
        recorder.record("GET /products/{id}", Duration::from_millis(4), Outcome::Status(429));
        let options = match crate::options::parse(["read", "--url", "http://127.0.0.1:9"].map(str::to_owned)).unwrap() {
            crate::options::Command::Run(options) => options,
            crate::options::Command::Help => unreachable!(),
        };
        let mut report = Report::new(&options, recorder.summarize(Duration::from_secs(1)));
        report.ceiling = Some(Ceiling::of_nginx(
            &report.operations,
            &report.operations,
            "GET /products/{id}",
        ));
        let table = report.render();
        assert!(table.contains("GET /products/{id}"), "{table}");
        assert!(table.contains("200:1 429:1"), "{table}");
        assert!(
            table.contains("ratio shop/nginx for GET /products/{id}: 1.00"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["scenario"], "read");
        assert_eq!(json["target"], "http://127.0.0.1:9");
        assert_eq!(json["operations"][0]["count"], 2);
        assert_eq!(json["operations"][0]["status"]["429"], 1);
        assert_eq!(json["ceiling"]["ratios"]["GET /products/{id}"], 1.0);
        assert!(report.passed());
    }
}
