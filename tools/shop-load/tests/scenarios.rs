//! shop-load against the one-process `shop` it starts on the real PostgreSQL, RabbitMQ and
//! Redis (`SHOP_TEST_*`), each scenario briefly, checked through its JSON: the flash sale's
//! invariant, counts that add up, the ceilings and their ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, path::Path, process::Command};

use serde_json::Value;

/// Runs shop-load with `args` plus `--json PATH` and returns its exit code and JSON.
fn shop_load(args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let shop =
        Path::new(env!("CARGO_BIN_EXE_shop-load")).with_file_name(format!("shop{}", std::env::consts::EXE_SUFFIX));
    assert!(
        shop.is_file(),
        "the shop binary is not built next to shop-load ({}): run `cargo build -p shop` first, or the whole workspace's tests",
        shop.display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_shop-load"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("shop-load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report =
        std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no JSON ({}):\n{stdout}\n{stderr}", output.status));
    println!("{stdout}");
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(&report).unwrap(),
    )
}

fn operation<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|operation| operation["operation"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

/// The statuses of an operation add up to its count; 2xx ones to its `ok`.
fn assert_counts_add_up(operation: &Value) {
    let status: BTreeMap<String, u64> = serde_json::from_value(operation["status"].clone()).unwrap();
    assert_eq!(
        status.values().sum::<u64>(),
        operation["count"].as_u64().unwrap(),
        "{operation:#}"
    );
    let ok: u64 = status
        .iter()
        .filter(|(code, _)| code.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(ok, operation["ok"].as_u64().unwrap(), "{operation:#}");
    for field in ["p50_ms", "p90_ms", "p99_ms", "max_ms", "throughput"] {
        assert!(operation[field].as_f64().unwrap() > 0.0, "{field}: {operation:#}");
    }
    assert!(operation["p50_ms"].as_f64() <= operation["p99_ms"].as_f64());
}

#[test]
fn a_flash_sale_sells_exactly_its_stock_and_is_compared_with_pgbench() {
    let (code, report) = shop_load(&[
        "flash-sale",
        "--spawn",
        "one-process",
        "--orders",
        "200",
        "--units",
        "50",
        "--buyers",
        "10",
        "--connections",
        "16",
        "--ceilings",
        "--pgbench-seconds",
        "2",
    ]);
    let sale = &report["flash_sale"];
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(sale["invariant"]["holds"], true, "{sale:#}");
    assert_eq!(sale["orders"], 200);
    let admitted = sale["admitted"].as_u64().unwrap();
    assert_eq!(admitted + sale["not_admitted"].as_u64().unwrap(), 200);
    assert_eq!(sale["pending"], 0);
    assert_eq!(sale["paid"], 50);
    let settled = ["paid", "rejected", "payment_failed"]
        .iter()
        .map(|s| sale[*s].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(settled, admitted);
    assert_eq!(sale["stock_after"], 0);
    assert!(sale["admitted_per_s"].as_f64().unwrap() > 0.0);
    assert!(sale["settled_per_s"].as_f64().unwrap() > 0.0);

    let place = operation(&report, "POST /orders");
    assert_counts_add_up(place);
    assert_eq!(place["status"]["202"].as_u64().unwrap(), admitted);

    let ceiling = &report["ceiling"];
    assert_eq!(ceiling["kind"], "pgbench", "{ceiling:#}");
    assert!(ceiling["throughput"].as_f64().unwrap() > 0.0, "{ceiling:#}");
    for figure in ["settled/s", "admitted/s"] {
        assert!(ceiling["ratios"][figure].as_f64().unwrap() > 0.0, "{ceiling:#}");
    }
}

#[test]
fn reads_of_one_product_are_compared_with_nginx_serving_the_same_body() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("latency.svg");
    let (code, report) = shop_load(&[
        "read",
        "--spawn",
        "one-process",
        "--duration",
        "2s",
        "--connections",
        "8",
        "--ceilings",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report:#}");
    let read = operation(&report, "GET /products/{id}");
    assert_counts_add_up(read);
    assert_eq!(read["ok"], read["count"], "{read:#}");
    let ceiling = &report["ceiling"];
    assert_eq!(ceiling["kind"], "nginx", "{ceiling:#}");
    let nginx = &ceiling["operations"][0];
    assert_counts_add_up(nginx);
    assert_eq!(nginx["ok"], nginx["count"], "nginx answered other than 200: {nginx:#}");
    let ratio = ceiling["ratios"]["GET /products/{id}"].as_f64().unwrap();
    let expected = read["throughput"].as_f64().unwrap() / ceiling["throughput"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9, "{ceiling:#}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("GET /products/{id}"), "{svg}");
}

#[test]
fn browsing_users_sign_up_by_mail_and_do_the_whole_mix() {
    let (code, report) = shop_load(&[
        "browse",
        "--spawn",
        "one-process",
        "--duration",
        "4s",
        "--connections",
        "4",
        "--products",
        "3",
    ]);
    assert_eq!(code, 0, "{report:#}");
    let all = operation(&report, "all");
    assert_counts_add_up(all);
    let mut sum = 0;
    for name in ["GET /products", "GET /products/{id}"] {
        let operation = operation(&report, name);
        assert_counts_add_up(operation);
        assert_eq!(operation["ok"], operation["count"], "{operation:#}");
    }
    for operation in report["operations"].as_array().unwrap().iter().skip(1) {
        sum += operation["count"].as_u64().unwrap();
    }
    assert_eq!(sum, all["count"].as_u64().unwrap());
    assert!(report.get("ceiling").is_none());
}

#[test]
fn the_list_is_measured_at_each_catalog_size() {
    let (code, report) = shop_load(&[
        "listing",
        "--spawn",
        "one-process",
        "--sizes",
        "300,3000",
        "--duration",
        "2s",
        "--connections",
        "8",
    ]);
    assert_eq!(code, 0, "{report:#}");
    let listing = &report["listing"];
    assert_eq!(listing["sizes"], serde_json::json!([300, 3000]), "{listing:#}");
    // One product in twenty is hidden and one in a hundred deleted; the rest are listed.
    assert_eq!(listing["listed"], serde_json::json!([282, 2820]), "{listing:#}");
    let shapes = listing["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 3, "{listing:#}");
    for shape in shapes {
        let name = shape["operation"].as_str().unwrap();
        let p99: Vec<f64> = serde_json::from_value(shape["p99_ms"].clone()).unwrap();
        assert_eq!(p99.len(), 2, "{shape:#}");
        for (size, p99) in ["300", "3000"].iter().zip(&p99) {
            // Every request of every size was answered 200, and each way has its figures.
            let operation = operation(&report, &format!("{name} @{size}"));
            assert_counts_add_up(operation);
            assert_eq!(operation["ok"], operation["count"], "{operation:#}");
            assert_eq!(operation["p99_ms"].as_f64().unwrap(), *p99);
        }
        let ratio = shape["ratio"].as_f64().unwrap();
        assert!((ratio - p99[1] / p99[0]).abs() < 1e-9, "{shape:#}");
    }
}
