//! One campaign from start to verdict: the deployment, the people, the ordering with the
//! faults injected on schedule, the settling, the observations and the checks.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::Method;
use serde_json::json;
use tokio::{task::JoinSet, time::Instant};

use crate::{
    accounts::{self, Account, Product},
    api::is_retryable,
    binaries::Binaries,
    checks::{self, FreshOrder, Observed, Settle},
    observe::{self, OrderView},
    profile::{Fault, Profile, Service},
    report::{FaultRecord, Report},
    stack::Stack,
    workload::Workload,
};

/// Buyers signed up at once.
const SIGN_UP_CONCURRENCY: usize = 4;
/// How long buyers may take to stop once the ordering ends.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an unanswered placement is asked again after the faults.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the stock may take to add up once the orders settled (releases travel through
/// the queues).
const STOCK_SETTLE: Duration = Duration::from_secs(15);
/// How long the fresh order may take to be paid.
const FRESH_ORDER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `profile` against the binaries in `binaries` and returns the report.
pub async fn run(profile: Profile, binaries: &Binaries) -> anyhow::Result<Report> {
    let stack = Stack::start(binaries).await?;
    let outcome = campaign(&profile, &stack).await;
    let unplanned_exits = stack.unplanned_exits();
    let log_dir = stack.log_dir.display().to_string();
    stack.stop().await;
    let (faults, observed) = outcome?;
    Ok(Report {
        stock: checks::stock_rows(&observed),
        checks: checks::evaluate(&observed),
        profile,
        log_dir,
        faults,
        observed,
        unplanned_exits,
    })
}

async fn campaign(profile: &Profile, stack: &Stack) -> anyhow::Result<(Vec<FaultRecord>, Observed)> {
    let api = &stack.api;
    let admin = accounts::admin(api).await?;
    let mut products = Vec::new();
    for (i, stock) in profile.stock.iter().enumerate() {
        // Odd, distinct prices: no total is a round figure a provider might treat specially.
        let price = 1_001 + 2 * i as i64;
        products.push(accounts::put_on_sale(api, &admin, &format!("Campaign item {i}"), price, *stock).await?);
    }
    let canary = accounts::put_on_sale(api, &admin, "Campaign canary", 999, 10).await?;
    let mail_log = Arc::clone(stack.service(Service::User)?.output());
    let buyers: Vec<Account> = futures::stream::iter(0..profile.buyers)
        .map(|n| {
            let mail_log = Arc::clone(&mail_log);
            async move { accounts::sign_up(api, &mail_log, &stack.run, n).await }
        })
        .buffered(SIGN_UP_CONCURRENCY)
        .try_collect()
        .await?;

    let workload = Workload::new(api.clone(), stack.run.clone(), buyers, products.clone());
    let start = Instant::now();
    let mut buyers_running = workload.start();
    let mut bursts = JoinSet::new();
    let (faults, ()) = tokio::join!(
        inject(profile, stack, &workload, start, &mut bursts),
        tokio::time::sleep_until(start + profile.ordering),
    );
    workload.stop();
    let stopping = async {
        while buyers_running.join_next().await.is_some() {}
        while bursts.join_next().await.is_some() {}
    };
    if tokio::time::timeout(STOP_TIMEOUT, stopping).await.is_err() {
        buyers_running.abort_all();
        bursts.abort_all();
    }
    let last_fault_end = start
        + faults
            .iter()
            .map(|record| record.ended)
            .max()
            .unwrap_or(profile.ordering);

    workload.resolve(RESOLVE_TIMEOUT).await;
    let buyer_ids: BTreeSet<String> = workload.buyers().iter().map(|buyer| buyer.user_id.clone()).collect();
    let (orders, settle) = settle(api, &admin, &buyer_ids, last_fault_end, profile.settle_limit).await?;
    let (orders, products) = stock_account(api, &admin, &buyer_ids, orders, products).await?;
    let dead_letters = stack.dead_letters().await?;
    let fresh_order = fresh_order(api, &workload.buyers()[0], &canary, &stack.run).await;
    Ok((
        faults,
        Observed {
            ledger: workload.ledger.snapshot(),
            orders,
            products,
            dead_letters,
            settle,
            fresh_order,
        },
    ))
}

/// Injects every fault of `profile` at its time; returns what happened.
async fn inject(
    profile: &Profile,
    stack: &Stack,
    workload: &Arc<Workload>,
    start: Instant,
    bursts: &mut JoinSet<()>,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    for scheduled in &profile.faults {
        tokio::time::sleep_until(start + scheduled.at).await;
        let started = start.elapsed();
        let result = match scheduled.fault {
            Fault::Kill { service, down } => stack.kill(service, down).await,
            Fault::KillCatalogMidBatch { orders, down } => {
                workload.burst(orders, 0.5, Duration::from_secs(10), bursts).await;
                stack.kill(Service::Catalog, down).await
            }
            Fault::Cut { link, outage } => {
                stack.cut(link, outage).await;
                Ok(())
            }
        };
        records.push(FaultRecord {
            fault: scheduled.fault,
            started,
            ended: start.elapsed(),
            error: result.err().map(|error| format!("{error:#}")),
        });
    }
    records
}

/// The buyers' orders, read until none is pending or twice the limit has passed since the last
/// fault ended; and when the last one left pending.
async fn settle(
    api: &crate::api::Api,
    admin: &Account,
    buyer_ids: &BTreeSet<String>,
    last_fault_end: Instant,
    limit: Duration,
) -> anyhow::Result<(Vec<OrderView>, Settle)> {
    let give_up = last_fault_end + 2 * limit;
    let mut last_read: Option<Vec<OrderView>> = None;
    loop {
        if let Ok(orders) = observe::all_orders(api, admin).await {
            let orders: Vec<OrderView> = orders
                .into_iter()
                .filter(|order| buyer_ids.contains(&order.user_id))
                .collect();
            if !orders.iter().any(OrderView::is_pending) {
                let settle = Settle {
                    after_last_fault: Some(last_fault_end.elapsed()),
                    limit,
                    waited: last_fault_end.elapsed(),
                };
                return Ok((orders, settle));
            }
            last_read = Some(orders);
        }
        if Instant::now() >= give_up {
            let orders = last_read.context("the orders could not be listed after the faults")?;
            let settle = Settle {
                after_last_fault: None,
                limit,
                waited: last_fault_end.elapsed(),
            };
            return Ok((orders, settle));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The orders and each product's stock, read again until the stock adds up (releases of
/// cancelled and returned items travel through the queues) or for [`STOCK_SETTLE`].
async fn stock_account(
    api: &crate::api::Api,
    admin: &Account,
    buyer_ids: &BTreeSet<String>,
    mut orders: Vec<OrderView>,
    products: Vec<Product>,
) -> anyhow::Result<(Vec<OrderView>, Vec<(Product, i64)>)> {
    let deadline = Instant::now() + STOCK_SETTLE;
    loop {
        let mut account = Vec::new();
        for product in &products {
            account.push((product.clone(), observe::stock(api, &product.id).await?));
        }
        let observed_rows = checks::stock_rows(&Observed {
            ledger: Default::default(),
            orders: orders.clone(),
            products: account.clone(),
            dead_letters: Vec::new(),
            settle: Settle {
                after_last_fault: None,
                limit: Duration::ZERO,
                waited: Duration::ZERO,
            },
            fresh_order: FreshOrder {
                outcome: String::new(),
                took: Duration::ZERO,
            },
        });
        if observed_rows.iter().all(|row| row.difference() == 0) || Instant::now() >= deadline {
            return Ok((orders, account));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        orders = observe::all_orders(api, admin)
            .await?
            .into_iter()
            .filter(|order| buyer_ids.contains(&order.user_id))
            .collect();
    }
}

/// Places one order of the canary product (which no buyer orders) and waits for it to be paid.
async fn fresh_order(api: &crate::api::Api, buyer: &Account, canary: &Product, run: &str) -> FreshOrder {
    let placed = Instant::now();
    let key = format!("{run}-fresh");
    let body = json!({ "items": [{ "product_id": canary.id, "quantity": 1 }] });
    let outcome = loop {
        let outcome = api
            .send(
                Method::POST,
                "/orders",
                Some(&buyer.token),
                &[("Idempotency-Key", key.as_str())],
                Some(&body),
            )
            .await;
        if !is_retryable(&outcome) || placed.elapsed() >= FRESH_ORDER_TIMEOUT {
            break outcome;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let order_id = match &outcome {
        Ok(reply) if reply.status.is_success() => reply.body["id"].as_str().unwrap_or_default().to_owned(),
        Ok(reply) => return not_paid(format!("not placed: {} {}", reply.status, reply.code()), placed),
        Err(error) => return not_paid(format!("not placed: {error}"), placed),
    };
    let mut status = String::from("pending");
    while placed.elapsed() < FRESH_ORDER_TIMEOUT {
        if let Ok(reply) = api.get(&format!("/orders/{order_id}"), Some(&buyer.token)).await
            && let Some(now) = reply.body["status"].as_str()
        {
            status = now.to_owned();
            if status != "pending" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    FreshOrder {
        outcome: status,
        took: placed.elapsed(),
    }
}

fn not_paid(outcome: String, placed: Instant) -> FreshOrder {
    FreshOrder {
        outcome,
        took: placed.elapsed(),
    }
}
