//! Reading metrics as Prometheus does: a real `GET /metrics` on the process's metrics listener.

use std::net::SocketAddr;

use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::telemetry::metrics;

/// The process's meter provider and its `GET /metrics` listener on a free loopback port.
#[derive(Debug)]
pub struct Scraper {
    addr: SocketAddr,
    /// The provider [`Scraper::install`] made; `None` when it is held elsewhere.
    _meters: Option<SdkMeterProvider>,
    _listener: DropGuard,
}

impl Scraper {
    /// Installs the global meter provider and serves it. Call it first, before anything makes an
    /// instrument (instruments made earlier record nothing); the provider is process-global, and
    /// every test runs in a process of its own.
    pub fn install() -> Self {
        let (meters, registry) =
            metrics::install(opentelemetry_sdk::Resource::builder().build(), None).expect("installing the meters");
        Self {
            _meters: Some(meters),
            ..Self::serving(registry)
        }
    }

    /// Serves `registry`, fed by a provider installed elsewhere: a test binary that installs its
    /// telemetry once in a process-wide static for all its tests. The listener runs on the
    /// calling test's runtime, which a static's first user would outlive, so each test makes
    /// its own.
    pub fn serving(registry: prometheus::Registry) -> Self {
        let stop = CancellationToken::new();
        let addr = metrics::serve("127.0.0.1:0".parse().expect("an address"), registry, stop.clone())
            .expect("serving the metrics");
        Self {
            addr,
            _meters: None,
            _listener: stop.drop_guard(),
        }
    }

    /// The text `GET /metrics` answers now.
    pub async fn scrape(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .expect("GET /metrics")
            .error_for_status()
            .expect("GET /metrics succeeds")
            .text()
            .await
            .expect("the metrics text")
    }

    /// The lines of series `metric` (exactly that name) carrying every `key="value"` of `labels`.
    pub async fn lines(&self, metric: &str, labels: &[&str]) -> Vec<String> {
        let text = self.scrape().await;
        let named = [format!("{metric}{{"), format!("{metric} ")];
        text.lines()
            .filter(|line| named.iter().any(|prefix| line.starts_with(prefix.as_str())))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .map(str::to_owned)
            .collect()
    }

    /// The sum of every series `metric` carrying every one of `labels` (0 when there is none):
    /// a counter over all the label values a test does not care about.
    pub async fn sum(&self, metric: &str, labels: &[&str]) -> f64 {
        self.lines(metric, labels)
            .await
            .iter()
            .map(|line| {
                line.rsplit(' ')
                    .next()
                    .expect("a value")
                    .parse::<f64>()
                    .expect("a number")
            })
            .sum()
    }

    /// The value of the one series `metric` with `labels`, or `None` when there is none.
    /// Panics when several match (the labels must name one series).
    pub async fn value(&self, metric: &str, labels: &[&str]) -> Option<f64> {
        let lines = self.lines(metric, labels).await;
        assert!(lines.len() <= 1, "one {metric} {labels:?} at most: {lines:#?}");
        lines
            .first()
            .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
    }

    /// Scrapes until the series `metric` with `labels` satisfies `check` (the poll behind a gauge
    /// runs on its own schedule), for at most ten seconds; returns its last value.
    pub async fn wait_for(&self, metric: &str, labels: &[&str], check: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let value = self.value(metric, labels).await;
            match value {
                Some(value) if check(value) => return value,
                _ if tokio::time::Instant::now() > deadline => {
                    panic!("{metric} {labels:?} is {value:?} after 10 s:\n{}", self.scrape().await)
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    }
}
