//! `flash-sale`: `--orders` single-unit orders for one product with `--units` in stock, spread
//! over `--buyers` accounts signed up before the timed part. Timed: the order phase (admission:
//! `202` answers a second, and their latency) and the settling (orders that reached a final
//! state a second, from the first order sent to the last order settled, by the orders' own
//! timestamps). Then the invariant: every order settled, nothing oversold, and exactly
//! min(orders, units) orders paid.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use fault_campaign::accounts::Account;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use shop_platform::testing::pgbench;
use tokio::time::Instant;

use crate::{
    ceiling::Ceiling,
    driver::{Limit, Workload},
    http::{self, Endpoint},
    options::Options,
    people,
    report::Report,
    stats::{Recorder, per_second},
    target::Shop,
};

/// The measured operation.
const PLACE: &str = "POST /orders";
/// Attempts at one order: a 429, a 5xx or no answer is sent again with the same key.
const ATTEMPTS: u32 = 5;
/// Buyers' order lists read at once while waiting for the orders to settle.
const POLLS_AT_ONCE: usize = 16;

/// The figures and the invariant of a flash sale.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSaleFigures {
    /// Orders sent.
    pub orders: u64,
    /// The product's stock before.
    pub units: u64,
    /// Accounts the orders came from.
    pub buyers: usize,
    /// Orders the shop accepted (202).
    pub admitted: u64,
    /// Orders refused even after retrying.
    pub not_admitted: u64,
    /// Settled as paid.
    pub paid: u64,
    /// Settled as rejected (out of stock).
    pub rejected: u64,
    /// Settled as payment_failed.
    pub payment_failed: u64,
    /// Still pending at the end of the wait.
    pub pending: u64,
    /// From the first order sent to the last 202, seconds.
    pub admission_seconds: f64,
    /// Admitted orders a second over `admission_seconds`.
    pub admitted_per_s: f64,
    /// From the first order sent to the last settled (by its `updated_at`) or the last answer,
    /// whichever came later, seconds.
    pub settle_seconds: f64,
    /// Settled orders a second over `settle_seconds`.
    pub settled_per_s: f64,
    /// The product's stock after.
    pub stock_after: i64,
    /// The checks.
    pub invariant: Invariant,
}

/// The flash sale's checks.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    /// Whether every check held.
    pub holds: bool,
    /// The checks that failed, in words.
    pub failures: Vec<String>,
}

impl Invariant {
    /// Checks the outcome: every admitted order settled, stock after = units − paid and not
    /// negative, paid = min(admitted, units).
    pub fn check(units: u64, admitted: u64, paid: u64, pending: u64, stock_after: i64) -> Self {
        let mut failures = Vec::new();
        if pending > 0 {
            failures.push(format!("{pending} orders never settled"));
        }
        if stock_after < 0 {
            failures.push(format!("oversold: stock after is {stock_after}"));
        }
        let expected_stock = i128::from(units) - i128::from(paid);
        if i128::from(stock_after) != expected_stock {
            failures.push(format!(
                "stock after is {stock_after}, not units − paid = {units} − {paid} = {expected_stock}"
            ));
        }
        let expected_paid = admitted.min(units);
        if paid != expected_paid {
            failures.push(format!(
                "{paid} orders paid, not min(admitted, units) = {expected_paid}"
            ));
        }
        Self {
            holds: failures.is_empty(),
            failures,
        }
    }
}

impl FlashSaleFigures {
    /// The lines under the table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nflash sale: {} orders for {} units from {} buyers: {} admitted ({} refused), {} paid, {} rejected, {} payment_failed, {} pending",
            self.orders,
            self.units,
            self.buyers,
            self.admitted,
            self.not_admitted,
            self.paid,
            self.rejected,
            self.payment_failed,
            self.pending
        );
        let _ = writeln!(
            out,
            "admitted/s {:.0} (over {:.2} s)   settled/s {:.0} (first order sent to last settled, {:.2} s)   stock after {}",
            self.admitted_per_s, self.admission_seconds, self.settled_per_s, self.settle_seconds, self.stock_after
        );
        if self.invariant.holds {
            out.push_str("invariant holds: no oversell, stock after = units − paid, paid = min(orders, units), every order settled\n");
        } else {
            for failure in &self.invariant.failures {
                let _ = writeln!(out, "INVARIANT FAILED: {failure}");
            }
        }
        out
    }
}

/// An order the shop accepted: whose it is, its id.
#[derive(Debug, Clone)]
struct Placed {
    buyer: usize,
    id: String,
}

/// The order phase.
#[derive(Debug)]
struct Sale {
    endpoint: Endpoint,
    recorder: Arc<Recorder>,
    product: String,
    buyers: Vec<Account>,
    run: String,
    placed: Mutex<Vec<Placed>>,
    refused: Mutex<u64>,
}

impl Workload for Sale {
    type User = ();

    async fn step(&self, _user: &mut (), seq: u64, intended: Instant) {
        let buyer = usize::try_from(seq).unwrap_or_default() % self.buyers.len();
        let key = format!("{}-{seq}", self.run);
        let body = json!({ "items": [{ "product_id": self.product, "quantity": 1 }] });
        let mut started = intended;
        for attempt in 1..=ATTEMPTS {
            let request = self
                .endpoint
                .request(Method::POST, "/api/v1/orders", Some(&self.buyers[buyer].token))
                .header("Idempotency-Key", &key)
                .json(&body);
            let answer = http::measure(&self.recorder, PLACE, request, started).await;
            match answer {
                Some((202, body)) => {
                    let id = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|order| order["id"].as_str().map(str::to_owned));
                    if let Some(id) = id {
                        self.placed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Placed { buyer, id });
                        return;
                    }
                    break;
                }
                // Worth again with the same key: the shop or a service was away or busy, or
                // an earlier attempt with this key is still being placed.
                None | Some((429 | 409 | 500..=599, _)) if attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    started = Instant::now();
                }
                _ => break,
            }
        }
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }
}

/// Runs the scenario on `shop`.
pub async fn run(shop: &Shop, http: &reqwest::Client, options: &Options) -> anyhow::Result<Report> {
    let admin = people::admin(shop).await?;
    let units = i64::try_from(options.units)?;
    let product = people::products(shop, &admin, "Flash sale item", 1, units).await?;
    let product = product.into_iter().next().context("the product just made")?.id;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    eprintln!("signing up {} buyers…", options.buyers);
    let buyers = people::users(shop, &run, options.buyers).await?;

    let recorder = Arc::new(Recorder::default());
    let sale = Arc::new(Sale {
        endpoint: Endpoint::new(http.clone(), &shop.origin),
        recorder: Arc::clone(&recorder),
        product: product.clone(),
        buyers: buyers.clone(),
        run,
        placed: Mutex::default(),
        refused: Mutex::default(),
    });
    let limit = Limit {
        duration: None,
        steps: Some(options.orders),
    };
    let first_sent = Utc::now();
    let waited = Instant::now();
    let admission = super::timed(
        "flash-sale",
        Arc::clone(&sale),
        vec![(); options.connections],
        &recorder,
        options,
        limit,
    )
    .await;
    let placed = std::mem::take(&mut *sale.placed.lock().unwrap_or_else(PoisonError::into_inner));
    let refused = *sale.refused.lock().unwrap_or_else(PoisonError::into_inner);

    eprintln!("waiting for {} orders to settle…", placed.len());
    let settled = settle(shop, &buyers, &placed).await?;
    let settle_span = settle_span(first_sent, settled.last_update, admission, waited.elapsed());
    let stock = shop.api.get(&format!("/products/{product}/stock"), None).await?;
    let stock_after = stock.body["stock"]
        .as_i64()
        .with_context(|| format!("the stock: {}", stock.body))?;

    let admitted = placed.len() as u64;
    let terminal = settled.paid + settled.rejected + settled.payment_failed;
    let figures = FlashSaleFigures {
        orders: options.orders,
        units: options.units,
        buyers: options.buyers,
        admitted,
        not_admitted: refused,
        paid: settled.paid,
        rejected: settled.rejected,
        payment_failed: settled.payment_failed,
        pending: settled.pending,
        admission_seconds: admission.as_secs_f64(),
        admitted_per_s: per_second(admitted, admission),
        settle_seconds: settle_span.as_secs_f64(),
        settled_per_s: per_second(terminal, settle_span),
        stock_after,
        invariant: Invariant::check(options.units, admitted, settled.paid, settled.pending, stock_after),
    };
    let mut report = Report::new(options, recorder.summarize(admission));
    if options.ceilings {
        report.ceiling = Some(match ceiling(shop, &admin, options).await {
            Ok(tps) => Ceiling::of_pgbench(
                tps,
                &[
                    ("settled/s", figures.settled_per_s),
                    ("admitted/s", figures.admitted_per_s),
                ],
            ),
            Err(error) => Ceiling::skipped("pgbench", &error),
        });
    }
    report.flash_sale = Some(figures);
    Ok(report)
}

/// From the first order sent to the last one settled, by the orders' own timestamps (exact, and
/// the same clock when the shop runs here), and never shorter than the admission: an order
/// settled at its placement (refused there, as most are once the units are gone) commits a
/// moment before its answer arrives, and the sale is not over before its last answer. The
/// moment the last was seen settled (`observed`, which adds the polling's own delay) only when
/// the timestamps are not usable (no order settled, or a clock that puts the last settlement
/// before the first order or after it was seen).
fn settle_span(
    first_sent: DateTime<Utc>,
    last_update: Option<DateTime<Utc>>,
    admission: Duration,
    observed: Duration,
) -> Duration {
    last_update
        .and_then(|last| (last - first_sent).to_std().ok())
        .filter(|span| *span <= observed)
        .map_or(observed, |span| span.max(admission.min(observed)))
}

/// pgbench's one-row conditional update on the shop's database, on a product of its own with
/// stock that never runs out.
async fn ceiling(shop: &Shop, admin: &Account, options: &Options) -> anyhow::Result<f64> {
    let url = shop
        .database_url
        .clone()
        .context("the shop's database is not known: with --url, give --database-url")?;
    let product = people::products(shop, admin, "Ceiling item", 1, 1_000_000_000).await?;
    let script = pgbench::stock_update_script(&product.first().context("the product just made")?.id);
    let (clients, seconds) = (options.pgbench_clients, options.pgbench_seconds);
    eprintln!("pgbench: {clients} clients for {seconds} s…");
    tokio::task::spawn_blocking(move || pgbench::tps(&url, &script, clients, seconds)).await?
}

/// How the admitted orders ended.
#[derive(Debug, Default)]
struct Settled {
    paid: u64,
    rejected: u64,
    payment_failed: u64,
    pending: u64,
    /// The latest `updated_at` of a settled order.
    last_update: Option<DateTime<Utc>>,
}

/// Reads every buyer's orders until each of `placed` has left `pending` (or a wait long
/// enough for the shop's own reservation timeout has passed).
async fn settle(shop: &Shop, buyers: &[Account], placed: &[Placed]) -> anyhow::Result<Settled> {
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_millis(placed.len() as u64 * 5);
    let mut ours: Vec<Vec<&str>> = vec![Vec::new(); buyers.len()];
    for order in placed {
        ours[order.buyer].push(&order.id);
    }
    loop {
        let lists: Vec<Vec<OrderState>> = futures::stream::iter(buyers.iter().zip(&ours))
            .filter(|(_, ours)| std::future::ready(!ours.is_empty()))
            .map(|(buyer, _)| orders_of(shop, buyer))
            .buffer_unordered(POLLS_AT_ONCE)
            .try_collect()
            .await?;
        let mut settled = Settled::default();
        let by_id: std::collections::HashMap<&str, (&str, Option<DateTime<Utc>>)> = lists
            .iter()
            .flatten()
            .map(|(id, status, updated)| (id.as_str(), (status.as_str(), *updated)))
            .collect();
        for order in placed {
            match by_id.get(order.id.as_str()) {
                Some(("paid" | "shipped" | "delivered", updated)) => {
                    settled.paid += 1;
                    settled.last_update = settled.last_update.max(*updated);
                }
                Some(("rejected" | "cancelled", updated)) => {
                    settled.rejected += 1;
                    settled.last_update = settled.last_update.max(*updated);
                }
                Some(("payment_failed", updated)) => {
                    settled.payment_failed += 1;
                    settled.last_update = settled.last_update.max(*updated);
                }
                _ => settled.pending += 1,
            }
        }
        if settled.pending == 0 || Instant::now() >= deadline {
            return Ok(settled);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An order as the settling reads it: id, status, `updated_at`.
type OrderState = (String, String, Option<DateTime<Utc>>);

/// Every order of `buyer`.
async fn orders_of(shop: &Shop, buyer: &Account) -> anyhow::Result<Vec<OrderState>> {
    let orders = shop
        .api
        .all_items("reading a buyer's orders", "/orders", Some(&buyer.token))
        .await?;
    Ok(orders
        .iter()
        .map(|order| {
            let field = |name: &str| order[name].as_str().unwrap_or_default().to_owned();
            let updated = DateTime::parse_from_rfc3339(&field("updated_at"))
                .ok()
                .map(|at| at.with_timezone(&Utc));
            (field("id"), field("status"), updated)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_settle_span_runs_to_the_last_settlement_or_the_last_answer() {
        let first = DateTime::parse_from_rfc3339("2026-12-02T06:55:03Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |millis: i64| Some(first + chrono::Duration::milliseconds(millis));
        let (admission, observed) = (Duration::from_millis(4_459), Duration::from_millis(5_074));
        // Settled after the last answer: up to the last settlement.
        assert_eq!(
            settle_span(first, at(4_800), admission, observed),
            Duration::from_millis(4_800)
        );
        // Settled a moment before the last answer (refused at placement): the admission, not
        // the polling that saw it.
        assert_eq!(settle_span(first, at(4_452), admission, observed), admission);
        // Timestamps that cannot be right: what was observed.
        assert_eq!(settle_span(first, at(-5), admission, observed), observed);
        assert_eq!(settle_span(first, at(6_000), admission, observed), observed);
        assert_eq!(settle_span(first, None, admission, observed), observed);
    }

    #[test]
    fn the_invariant_holds_only_when_stock_and_payments_agree() {
        assert!(Invariant::check(50, 200, 50, 0, 0).holds);
        assert!(Invariant::check(50, 30, 30, 0, 20).holds);
        let oversold = Invariant::check(50, 200, 51, 0, -1);
        assert!(!oversold.holds);
        assert!(
            oversold.failures.iter().any(|f| f.contains("oversold")),
            "{:?}",
            oversold.failures
        );
        let lost = Invariant::check(50, 200, 49, 0, 0);
        assert!(
            lost.failures.iter().any(|f| f.contains("units − paid")),
            "{:?}",
            lost.failures
        );
        assert!(
            lost.failures.iter().any(|f| f.contains("min(admitted, units)")),
            "{:?}",
            lost.failures
        );
        assert!(!Invariant::check(50, 200, 50, 3, 0).holds);
    }
}
