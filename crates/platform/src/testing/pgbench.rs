//! The PostgreSQL ceiling for the stock update: `pgbench` running the bare conditional update
//! of one product row (what a naive worker would run per order, each in its own transaction)
//! on a given database. The reservation benchmark and the load generator compare with it.

use std::process::Command;

use anyhow::{Context as _, bail};

/// The statement: one unit off one product, never below zero, as the catalog's update looks.
pub fn stock_update_script(product_id: &str) -> String {
    format!(
        "UPDATE catalog.products SET stock = stock - 1, updated_at = now() WHERE id = '{product_id}' AND stock >= 1;\n"
    )
}

/// The transactions per second `pgbench` reaches running `script` on `database_url` with
/// `clients` clients (two threads at most) for `seconds`. Fails clearly when pgbench is not
/// installed (`PgbenchMissing`).
pub fn tps(database_url: &str, script: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let path = std::env::temp_dir().join(format!("{}.sql", super::unique_name("pgbench")));
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    let output = Command::new("pgbench")
        .args(["-n", "-f"])
        .arg(&path)
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &seconds.to_string()])
        .arg(database_url)
        .output();
    let _ = std::fs::remove_file(&path);
    let output = match output {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(PgbenchMissing.into()),
        result => result.context("running pgbench")?,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    }
    parse_tps(&stdout).with_context(|| format!("no tps in pgbench's output: {stdout}"))
}

/// `pgbench` is not on `PATH`.
#[derive(Debug, thiserror::Error)]
#[error("pgbench is not installed (not found on PATH; Debian: apt-get install postgresql-client)")]
pub struct PgbenchMissing;

/// The figure of pgbench's `tps = 4028.123 (without initial connection time)` line.
fn parse_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tps_line_is_read() {
        let output = "latency average = 1.9 ms\ntps = 4028.123456 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(4028.123456));
        assert_eq!(parse_tps("pgbench: error"), None);
    }

    #[test]
    fn the_script_updates_one_row_only_while_stock_remains() {
        let script = stock_update_script("0190-ab");
        assert!(script.contains("WHERE id = '0190-ab' AND stock >= 1"), "{script}");
    }
}
