//! `shop-load`: load through the shop's public REST edge (`/api/v1`), measured the way users
//! compare with Online Boutique's load generator: scenarios (`browse`, `flash-sale`, `read`, `listing`),
//! a closed or open loop, latency percentiles and status counts per operation, JSON and an SVG
//! chart, and the ceilings (pgbench, nginx) measured in the same run.

pub mod ceiling;
pub mod driver;
pub mod http;
pub mod options;
pub mod people;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod smtp;
pub mod stats;
pub mod svg;
pub mod target;

use options::{Options, Scenario};
use report::Report;
use target::Shop;

/// Runs the scenario of `options`: starts (or reaches) the shop, loads it, measures the ceiling
/// when asked, and removes what it started.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let http = http::client(options.connections)?;
    let shop = Shop::start(options, http.clone()).await?;
    let outcome = match options.scenario {
        Scenario::Browse => scenario::browse::run(&shop, &http, options).await,
        Scenario::FlashSale => scenario::flash_sale::run(&shop, &http, options).await,
        Scenario::Read => scenario::read::run(&shop, &http, options).await,
        Scenario::Listing => scenario::listing::run(&shop, &http, options).await,
    };
    shop.stop().await;
    outcome
}
