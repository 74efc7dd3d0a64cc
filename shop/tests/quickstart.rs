//! The README's quickstart, executed: the `shop` binary is started exactly as the README says
//! (on free ports and a fresh data directory), then the README's `sh quickstart` block runs
//! under bash against it. If the README and the product drift apart, this fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/loopback.rs"]
mod loopback;

use std::time::Duration;

const README: &str = include_str!("../../README.md");
const START: &str = "SHOP_ADMIN_EMAIL=admin@example.com SHOP_ADMIN_PASSWORD='Quick-start-1' cargo run --bin shop";

/// The body of the fenced block whose info string is `sh quickstart`.
fn quickstart_block() -> String {
    let start = README
        .find("```sh quickstart\n")
        .expect("the README has a ```sh quickstart block");
    let body = &README[start + "```sh quickstart\n".len()..];
    body[..body.find("\n```").expect("the quickstart block is closed")].to_owned()
}

#[tokio::test]
async fn the_readme_quickstart_works_as_written() {
    assert!(README.contains(START), "the README starts the mesh with: {START}");
    let data = tempfile::tempdir().unwrap();
    let (_shop, http) = loopback::spawn_shop(
        loopback::shop_command(data.path())
            .env("SHOP_ADMIN_EMAIL", "admin@example.com")
            .env("SHOP_ADMIN_PASSWORD", "Quick-start-1"),
    )
    .await;

    let script = format!("set -euo pipefail\n{}", quickstart_block());
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("SHOP", format!("http://{http}"))
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the quickstart failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Desk lamp: 12900 KRW, 5 in stock"), "{stdout}");
    assert!(stdout.contains("is paid"), "{stdout}");
    assert!(stdout.contains("stock left: 3"), "{stdout}");
}
