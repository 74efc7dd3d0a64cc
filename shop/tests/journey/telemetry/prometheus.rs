//! A real Prometheus (the Debian package's binary, which `scripts/test` installs) scraping the
//! four binaries' `/metrics` every second, with its own configuration, storage and loopback
//! port; the series the dashboards and alerts read are then asked of its HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::process::Command;

use super::{SETTLE_TIMEOUT, place_one_order, quick_export};
use crate::{api::eventually, process::Process, stack::Stack};

/// How long Prometheus may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `prometheus` executable on `PATH`; the test fails, saying how to get it, when there is none.
fn executable() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "prometheus is not installed: run scripts/test once (it installs the Debian \
             package `prometheus`), or `apt-get install --no-install-recommends prometheus`"
        )
    })
}

/// A Prometheus of this test's own.
struct Prometheus {
    process: Process,
    /// `http://127.0.0.1:<port>`.
    origin: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`(job, host:port)`) every second, on a free
    /// loopback port (another one if that port was taken meanwhile).
    async fn start(targets: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets)).unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        for attempt in 1..=3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let origin = format!("http://127.0.0.1:{port}");
            let mut command = Command::new(executable());
            command
                .env_clear()
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", storage(dir.path()).display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn");
            let mut process = Process::start("prometheus", command);
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let ready = http.get(format!("{origin}/-/ready")).send().await;
                if ready.is_ok_and(|reply| reply.status() == 200) {
                    return Self {
                        process,
                        origin,
                        http,
                        _dir: dir,
                    };
                }
                if attempt < 3 && process.has_exited() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let taken = process
                        .output()
                        .lines_from(0)
                        .iter()
                        .any(|line| line.contains("address already in use"));
                    if taken {
                        process.forget_output();
                        break;
                    }
                }
                process.assert_running();
                assert!(
                    Instant::now() < deadline,
                    "prometheus not ready within {START_TIMEOUT:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        unreachable!("the last attempt returns or fails")
    }

    /// The value of the instant query `query` if it returns exactly one sample.
    async fn value(&mut self, query: &str) -> Option<f64> {
        self.process.assert_running();
        let reply: Value = self
            .http
            .get(format!("{}/api/v1/query", self.origin))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        assert_eq!(reply["status"], "success", "{query}: {reply}");
        let result = reply["data"]["result"].as_array()?;
        match &result[..] {
            [sample] => sample["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Waits until `query` has one sample that `accept` takes.
    async fn eventually(&mut self, query: &str, accept: impl Fn(f64) -> bool) {
        eventually(&format!("prometheus answers {query}"), SETTLE_TIMEOUT, async || {
            self.value(query).await.filter(|value| accept(*value))
        })
        .await;
    }
}

fn storage(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// One job per target, scraped every second.
fn scrape_config(targets: &[(String, String)]) -> String {
    let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, target) in targets {
        config.push_str(&format!(
            "  - job_name: {job:?}\n    static_configs:\n      - targets: [{target:?}]\n"
        ));
    }
    config
}

#[tokio::test]
async fn prometheus_scrapes_the_red_and_pipeline_series_of_an_order() {
    // Fail at once, not after starting the stack, when Prometheus is missing.
    executable();
    let mut stack = Stack::services_with(|_| quick_export()).await;
    let targets = stack.metrics_addrs().await;
    assert_eq!(targets.len(), 4, "{targets:?}");
    let mut prometheus = Prometheus::start(&targets).await;
    place_one_order(&stack).await;

    // Every binary is scraped.
    for (job, _) in &targets {
        prometheus
            .eventually(&format!("up{{job={job:?}}}"), |up| up == 1.0)
            .await;
    }
    let at_least_one = |value: f64| value >= 1.0;
    // RED: the gateway's route, the call it made, the call the order service served.
    for query in [
        r#"sum(http_server_request_duration_seconds_count{job="shop-gateway",http_route="/api/v1/orders",http_request_method="POST",http_response_status_code="202"})"#,
        r#"sum(rpc_client_duration_seconds_count{job="shop-gateway",rpc_service="shop.order.v1.OrderService",rpc_method="PlaceOrder",rpc_grpc_status_code="0"})"#,
        r#"sum(rpc_server_duration_seconds_count{job="shop-order",rpc_service="shop.order.v1.OrderService",rpc_method="PlaceOrder",rpc_grpc_status_code="0"})"#,
        // The pipeline: the order placed and paid, the catalog's reservation applied.
        r#"sum(shop_orders_total{job="shop-order",shop_order_event="placed"})"#,
        r#"sum(shop_orders_total{job="shop-order",shop_order_event="paid"})"#,
        r#"sum(catalog_stock_applied_total{job="shop-catalog",work="reserve",outcome="reserved"})"#,
    ] {
        prometheus.eventually(query, at_least_one).await;
    }
    // Nothing went to a dead-letter queue of this stack's queues, and the gauge says so.
    let dead = format!(
        r#"sum(messaging_queue_dead_letters{{job="shop-catalog",messaging_destination_name=~"{}.*"}})"#,
        stack.queue("reserve").trim_end_matches(".reserve")
    );
    prometheus.eventually(&dead, |depth| depth == 0.0).await;
    // The histogram's buckets hold the call too (what latency quantiles are computed from).
    prometheus
        .eventually(
            r#"sum(rpc_server_duration_seconds_bucket{job="shop-order",rpc_method="PlaceOrder",le="+Inf"})"#,
            at_least_one,
        )
        .await;
    stack.assert_running_without("panicked");
}
