//! The fault campaign as tests, on the real servers (`SHOP_TEST_DATABASE_URL`,
//! `SHOP_TEST_AMQP_URL`, `SHOP_TEST_REDIS_URL`) and the service binaries built next to this
//! test (`cargo nextest run --workspace` builds them; alone: `cargo build --bins` first).
//!
//! - `calm_campaign_passes_every_check`: the whole harness with no fault; every check must
//!   pass, or the harness itself is wrong.
//! - `fault_campaign_short`: the CI cut of the campaign (an order service kill, a PostgreSQL
//!   cut, a RabbitMQ cut); every check must pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fault_campaign::{Binaries, Profile};

async fn run(profile: Profile) -> fault_campaign::Report {
    let dir = Binaries::next_to_this_executable().unwrap();
    let binaries = Binaries::in_dir(&dir).unwrap();
    let report = fault_campaign::run(profile, &binaries).await.unwrap();
    // Printed in any case: nextest shows it when the test fails (or with --no-capture).
    println!("{}", report.render());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calm_campaign_passes_every_check() {
    let report = run(Profile::calm()).await;
    assert!(
        report.passed(),
        "the calm campaign failed a check:\n{}",
        report.render()
    );
    let placed = report.observed.ledger.placements.len();
    assert!(placed >= 20, "the buyers placed only {placed} orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_short() {
    let report = run(Profile::short()).await;
    assert!(report.passed(), "the fault campaign failed:\n{}", report.render());
}
