//! The chart's dashboards and alert rules (docs/operations.md, "Dashboards and alerts") watch
//! metrics the binaries really serve: a renamed instrument, or a panel written against a name
//! nobody exports, would otherwise show "no data" and an alert that can never fire. The test
//! starts the four binaries, drives an order through REST (placed, paid, shipped, delivered;
//! and one rejected), scrapes every process's `/metrics`, and fails naming each metric that a
//! dashboard panel or variable (`helm/shop/dashboards/*.json`) or an alert or recording rule
//! (`helm/shop/rules/shop-alerts.yaml`) selects and no process serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    journey::{create_product, log_in, place_order},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD, DELIVER_AFTER, SHIP_AFTER, Stack},
};

/// Series Prometheus makes itself rather than scraping them.
const FROM_PROMETHEUS: [&str; 1] = ["up"];
/// How long the periodic gauges (pending orders, outboxes, queue depths, pools) may take to
/// report after the traffic.
const METRICS_TIMEOUT: Duration = Duration::from_secs(60);

/// PromQL words that are not metric names.
const KEYWORDS: [&str; 8] = ["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Aggregation operators, which may be followed by `by (…)` before their parenthesis.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The index just past the bracket that closes the one at `open` (`(`/`)`, `{`/`}`, `[`/`]`),
/// skipping quoted strings; the end of `text` if it is never closed.
fn skip_group(text: &[u8], open: usize) -> usize {
    let (opening, closing) = (text[open], matching(text[open]));
    let mut depth = 0;
    let mut i = open;
    while i < text.len() {
        match text[i] {
            b'"' | b'\'' | b'`' => i = skip_string(text, i) - 1,
            c if c == opening => depth += 1,
            c if c == closing => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    text.len()
}

fn matching(open: u8) -> u8 {
    match open {
        b'(' => b')',
        b'{' => b'}',
        _ => b']',
    }
}

/// The index just past the string literal that starts at `start`.
fn skip_string(text: &[u8], start: usize) -> usize {
    let quote = text[start];
    let mut i = start + 1;
    while i < text.len() {
        if text[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if text[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    text.len()
}

fn is_ident(c: u8, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':' || (!first && c.is_ascii_digit())
}

/// The metric names a PromQL expression (or a Grafana `label_values(…)` variable query)
/// selects: identifiers that are not functions, keywords, label names (in `{…}`, `by (…)`, …),
/// strings, numbers, durations or dashboard variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let text = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_string(text, i);
        } else if c == b'{' || c == b'[' {
            i = skip_group(text, i);
        } else if c == b'$' {
            i += 1;
            if text.get(i) == Some(&b'{') {
                i = skip_group(text, i);
            } else {
                while i < text.len() && is_ident(text[i], false) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == b'.' && text.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'.' || text[i] == b'_') {
                i += 1;
            }
        } else if is_ident(c, true) {
            let start = i;
            while i < text.len() && is_ident(text[i], false) {
                i += 1;
            }
            let word = &expr[start..i];
            let mut next = i;
            while next < text.len() && text[next].is_ascii_whitespace() {
                next += 1;
            }
            let call = text.get(next) == Some(&b'(');
            if LABEL_LISTS.contains(&word) {
                if call {
                    i = skip_group(text, next);
                }
            } else if word == "label_values" && call {
                // label_values(selector, label) or label_values(label): only a selector names a metric.
                let end = skip_group(text, next);
                let inner = &expr[next + 1..end - 1];
                if let Some((selector, _label)) = inner.rsplit_once(',') {
                    names.extend(metric_names(selector));
                }
                i = end;
            } else if !call && !KEYWORDS.contains(&word) && !AGGREGATIONS.contains(&word) {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The series of a histogram besides its own name.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_count", "_sum"];

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/shop")
}

/// Every PromQL expression of the dashboards, with where it is (`dashboard: panel`): panel
/// targets (`expr`; Tempo targets carry `query` instead) and query variables.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(value: &Value, place: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                let place = map
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or_else(|| place.to_owned(), |title| format!("{place}: {title}"));
                if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                    out.push((place.clone(), expr.to_owned()));
                }
                for value in map.values() {
                    walk(value, &place, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, place, out);
                }
            }
            _ => {}
        }
    }
    let dir = chart_dir().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    let mut out = Vec::new();
    for path in files {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        walk(&board["panels"], &name, &mut out);
        for variable in board["templating"]["list"].as_array().unwrap() {
            if variable["type"] == "query" {
                let query = variable["query"]["query"]
                    .as_str()
                    .or_else(|| variable["query"].as_str());
                let place = format!("{name}: variable {}", variable["name"]);
                out.push((place, query.unwrap().to_owned()));
            }
        }
    }
    out
}

/// The rules file's expressions (`expr:`, single-line or a block scalar), with the alert or
/// record they belong to, and the names its recording rules define.
fn rule_queries() -> (Vec<(String, String)>, BTreeSet<String>) {
    let path = chart_dir().join("rules/shop-alerts.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    let mut records = BTreeSet::new();
    let mut current = String::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let key = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if let Some(name) = key.strip_prefix("alert:") {
            current = format!("alert {}", name.trim());
        } else if let Some(name) = key.strip_prefix("record:") {
            current = format!("record {}", name.trim());
            records.insert(name.trim().to_owned());
        } else if let Some(value) = key.strip_prefix("expr:") {
            let value = value.trim();
            let expr = if value.starts_with('|') || value.starts_with('>') {
                let indent = line.len() - trimmed.len();
                lines[index + 1..]
                    .iter()
                    .take_while(|next| next.trim().is_empty() || next.len() - next.trim_start().len() > indent)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                value.to_owned()
            };
            exprs.push((format!("shop-alerts.yaml: {current}"), expr));
        }
    }
    assert!(
        exprs.len() >= 10 && !records.is_empty(),
        "{}: found only {} expressions and {} records",
        path.display(),
        exprs.len(),
        records.len()
    );
    (exprs, records)
}

/// Each metric name the dashboards and rules select, with the places that use it.
fn used_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let (mut queries, records) = rule_queries();
    queries.extend(dashboard_queries());
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (place, query) in queries {
        for name in metric_names(&query) {
            if records.contains(&name) || FROM_PROMETHEUS.contains(&name.as_str()) {
                continue;
            }
            used.entry(name).or_default().insert(place.clone());
        }
    }
    used
}

/// The names a `/metrics` page serves: every sample's, and each histogram's own name (what
/// remains of `…_bucket`, `…_count`, `…_sum`; a gauge may end in `_count` too, so only the
/// `# TYPE … histogram` lines say which are histograms).
fn served_metrics(page: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = page
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    for line in page.lines() {
        if let Some(["#", "TYPE", name, "histogram"]) = line.split_whitespace().collect::<Vec<_>>().get(..4) {
            names.insert((*name).to_owned());
            names.extend(HISTOGRAM_SUFFIXES.iter().map(|suffix| format!("{name}{suffix}")));
        }
    }
    names
}

#[test]
fn metric_names_of_promql() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{namespace=~"$namespace", le=~"1|1\\.0"}[$__rate_interval])))"#
        ),
        ["http_server_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            "max by (namespace, q) (messaging_queue_depth) > 0\nunless on(namespace, q)\nsum by (namespace, q) (rate(messaging_process_duration_seconds_count[5m])) > 0"
        ),
        ["messaging_process_duration_seconds_count", "messaging_queue_depth"]
    );
    assert_eq!(
        names("shop:slow:ratio_rate1h > on() group_left() (14.4 * shop:threshold:budget) and up == 0"),
        ["shop:slow:ratio_rate1h", "shop:threshold:budget", "up"]
    );
    assert_eq!(
        names(r#"label_values(rpc_server_duration_seconds_count{namespace=~"$namespace"}, rpc_service)"#),
        ["rpc_server_duration_seconds_count"]
    );
    assert_eq!(names("label_values(namespace)"), Vec::<String>::new());
    assert_eq!(
        names(r#"sum(increase(shop_orders_total{shop_order_event="paid"}[${__range}])) * 60 / vector(1e3)"#),
        ["shop_orders_total"]
    );
    assert_eq!(
        served_metrics(concat!(
            "# TYPE shop_orders_total counter\n",
            "shop_orders_total{shop_order_event=\"placed\"} 1\n",
            "# TYPE rpc_server_duration_seconds histogram\n",
            "rpc_server_duration_seconds_bucket{le=\"1\"} 3\n",
            "# TYPE db_client_connection_count gauge\n",
            "db_client_connection_count{db_client_connection_state=\"idle\"} 4\n",
        ))
        .into_iter()
        .collect::<Vec<_>>(),
        [
            "db_client_connection_count",
            "rpc_server_duration_seconds",
            "rpc_server_duration_seconds_bucket",
            "rpc_server_duration_seconds_count",
            "rpc_server_duration_seconds_sum",
            "shop_orders_total",
        ]
    );
}

#[tokio::test]
async fn metrics_of_dashboards_and_alerts() {
    let used = used_metrics();
    let mut stack = Stack::services(&[]).await;
    let api = &stack.api;
    let admin = log_in(api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let product = create_product(api, &admin, "Watched lamp", "For the dashboards", 12_900, 2).await;
    // One order goes all the way (placed, reserved, paid, shipped, delivered); one asks for more
    // than there is and is rejected.
    let delivered = place_order(
        api,
        &admin,
        "observed-1",
        &json!({ "items": [{ "product_id": product, "quantity": 1 }] }),
    )
    .await;
    let rejected = place_order(
        api,
        &admin,
        "observed-2",
        &json!({ "items": [{ "product_id": product, "quantity": 5 }] }),
    )
    .await;
    let settle = Duration::from_secs(30) + SHIP_AFTER + DELIVER_AFTER;
    api.wait_for_order(
        &admin.access,
        rejected["id"].as_str().unwrap(),
        "rejected",
        settle,
        |order| order["status"] == "rejected",
    )
    .await;
    api.wait_for_order(
        &admin.access,
        delivered["id"].as_str().unwrap(),
        "delivered",
        settle,
        |order| order["status"] == "delivered",
    )
    .await;

    let client = reqwest::Client::new();
    let addrs = stack.metrics_addrs().await;
    let deadline = Instant::now() + METRICS_TIMEOUT;
    loop {
        let mut served = BTreeSet::new();
        let mut one_second_bucket = false;
        for (_process, addr) in &addrs {
            let page = client
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .unwrap_or_else(|error| panic!("GET http://{addr}/metrics: {error}"))
                .text()
                .await
                .unwrap();
            served.extend(served_metrics(&page));
            // The latency SLO's rules count the gateway's requests within 1 s from this bucket.
            one_second_bucket |= page.lines().any(|line| {
                line.starts_with("http_server_request_duration_seconds_bucket{") && line.contains(r#"le="1"}"#)
            });
        }
        assert!(
            one_second_bucket,
            "the gateway's latency histogram has no le=\"1\" bucket (the SLO alerts need it)"
        );
        let missing: Vec<String> = used
            .iter()
            .filter(|(name, _)| !served.contains(*name))
            .map(|(name, places)| {
                format!(
                    "{name} (used by {})",
                    places.iter().cloned().collect::<Vec<_>>().join("; ")
                )
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} metric(s) used by the dashboards or alert rules are served by no binary:\n  {}\nserved: {}",
            missing.len(),
            missing.join("\n  "),
            served.into_iter().collect::<Vec<_>>().join(" ")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
