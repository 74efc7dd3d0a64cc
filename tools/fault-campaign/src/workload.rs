//! The buyers: each orders one or two products at a time through the REST edge, with an
//! Idempotency-Key, for as long as the ordering lasts, and retries a placement with the same
//! key whenever the edge or a service behind it is away (as a real client must). Some
//! placements are sent once more on purpose after their answer; some orders are cancelled
//! (right away or a moment later, so both pending and paid ones are); some are returned once
//! delivered. Everything goes in the ledger.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rand::Rng as _;
use reqwest::Method;
use serde_json::{Value, json};
use shop_platform::backoff::Backoff;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    accounts::{Account, Product},
    api::{Api, Reply, is_retryable},
    ledger::SharedLedger,
    stack::{DELIVER_AFTER, SHIP_AFTER},
};

/// Share of placements sent once more after their answer.
const REPEAT_SHARE: f64 = 0.10;
/// Share of orders cancelled by their buyer.
const CANCEL_SHARE: f64 = 0.15;
/// Share of orders returned (one item) once delivered.
const RETURN_SHARE: f64 = 0.10;
/// A return not possible this long after placement (never delivered) is given up.
const RETURN_GIVE_UP: Duration = Duration::from_secs(40);

/// The buyers and what they share.
#[derive(Debug)]
pub struct Workload {
    api: Api,
    run: String,
    buyers: Vec<Account>,
    products: Vec<Product>,
    /// What they did.
    pub ledger: SharedLedger,
    /// Cancelled when the ordering ends.
    stop: CancellationToken,
}

/// An order a buyer means to return once it is delivered.
struct ToReturn {
    order_id: String,
    placed: Instant,
}

impl Workload {
    /// Buyers `buyers` ordering from `products` (not empty) through `api`.
    pub fn new(api: Api, run: String, buyers: Vec<Account>, products: Vec<Product>) -> Arc<Self> {
        Arc::new(Self {
            api,
            run,
            buyers,
            products,
            ledger: SharedLedger::default(),
            stop: CancellationToken::new(),
        })
    }

    /// The buyers' accounts.
    pub fn buyers(&self) -> &[Account] {
        &self.buyers
    }

    /// Starts every buyer.
    pub fn start(self: &Arc<Self>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for buyer in 0..self.buyers.len() {
            set.spawn(Arc::clone(self).buy(buyer));
        }
        set
    }

    /// Ends the ordering: buyers finish what they are doing and stop; unanswered placements
    /// stay unanswered until [`Workload::resolve`].
    pub fn stop(&self) {
        self.stop.cancel();
    }

    async fn buy(self: Arc<Self>, buyer: usize) {
        let mut to_return: Vec<ToReturn> = Vec::new();
        let mut n = 0_u64;
        while !self.stop.is_cancelled() {
            n += 1;
            let key = format!("{}-b{buyer}-{n}", self.run);
            if let Some(order_id) = self.place(buyer, key).await {
                let (cancel, give_back, wait_ms) = {
                    let mut rng = rand::rng();
                    let roll: f64 = rng.random();
                    (
                        roll < CANCEL_SHARE,
                        roll >= 1.0 - RETURN_SHARE,
                        rng.random_range(0..1_500),
                    )
                };
                if cancel {
                    // Right away (pending) or a moment later (paid, usually).
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                    self.cancel(buyer, &order_id).await;
                } else if give_back {
                    to_return.push(ToReturn {
                        order_id,
                        placed: Instant::now(),
                    });
                }
            }
            self.return_delivered(buyer, &mut to_return).await;
            let think = rand::rng().random_range(10..80);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
    }

    /// One or two distinct products, one to three of each.
    fn lines(&self) -> Value {
        let mut rng = rand::rng();
        let first = rng.random_range(0..self.products.len());
        let mut lines = vec![json!({ "product_id": self.products[first].id, "quantity": rng.random_range(1..=3) })];
        if self.products.len() > 1 && rng.random_bool(0.4) {
            let second = (first + rng.random_range(1..self.products.len())) % self.products.len();
            lines.push(json!({ "product_id": self.products[second].id, "quantity": rng.random_range(1..=3) }));
        }
        json!({ "items": lines })
    }

    /// Places an order under `key`, retrying the same key and body until the shop answers it
    /// (2xx or a 4xx refusal) or the ordering ends; then, sometimes, once more on purpose.
    /// Returns the order's id.
    pub async fn place(&self, buyer: usize, key: String) -> Option<String> {
        let body = self.lines();
        let index = self.ledger.start(key, buyer, body);
        let order_id = self.answer(index, &self.stop).await?;
        if rand::rng().random_bool(REPEAT_SHARE) {
            self.ledger.with(|ledger| ledger.placements[index].repeated = true);
            self.answer(index, &self.stop).await;
        }
        Some(order_id)
    }

    /// Sends placement `index` until it is answered or `until` is cancelled; records the
    /// answer. The order id of a 2xx answer.
    async fn answer(&self, index: usize, until: &CancellationToken) -> Option<String> {
        let (key, buyer, body) = self.ledger.with(|ledger| {
            let placement = &ledger.placements[index];
            (placement.key.clone(), placement.buyer, placement.body.clone())
        });
        let token = &self.buyers[buyer].token;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let outcome = self
                .api
                .send(
                    Method::POST,
                    "/orders",
                    Some(token),
                    &[("Idempotency-Key", key.as_str())],
                    Some(&body),
                )
                .await;
            if !is_retryable(&outcome) {
                let reply = outcome.ok()?;
                return self.ledger.with(|ledger| {
                    let placement = &mut ledger.placements[index];
                    if reply.status.is_success() {
                        let id = reply.body["id"].as_str()?.to_owned();
                        placement.answers.push(id.clone());
                        Some(id)
                    } else {
                        placement.refused = Some(format!("{} {}", reply.status.as_u16(), reply.code()));
                        None
                    }
                });
            }
            self.ledger.count_error(&outcome);
            let error = SharedLedger::describe(&outcome);
            self.ledger.with(|ledger| {
                let placement = &mut ledger.placements[index];
                placement.retried += 1;
                placement.last_error = Some(error);
            });
            if !backoff.wait(until).await {
                return None;
            }
        }
    }

    /// Asks again, with the same key and body, for every placement never answered (the
    /// ordering ended while its service was away), each for at most `timeout`.
    pub async fn resolve(self: &Arc<Self>, timeout: Duration) {
        let unanswered: Vec<usize> = self.ledger.with(|ledger| {
            (0..ledger.placements.len())
                .filter(|&i| ledger.placements[i].answers.is_empty() && ledger.placements[i].refused.is_none())
                .collect()
        });
        let mut set = JoinSet::new();
        for index in unanswered {
            let workload = Arc::clone(self);
            set.spawn(async move {
                let give_up = CancellationToken::new();
                let _guard = give_up.clone().drop_guard();
                let _ = tokio::time::timeout(timeout, workload.answer(index, &give_up)).await;
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Cancels `order_id`, retrying while the edge is away; a refusal (already shipped, say)
    /// is an answer too.
    async fn cancel(&self, buyer: usize, order_id: &str) {
        self.ledger.with(|ledger| ledger.cancels_asked += 1);
        let path = format!("/orders/{order_id}/cancel");
        if let Some(reply) = self.until_answered(buyer, &path).await {
            self.ledger.with(|ledger| {
                if reply.status.is_success() {
                    ledger.cancels_done += 1;
                } else {
                    let refusal = format!("{} {}", reply.status.as_u16(), reply.code());
                    *ledger.cancels_refused.entry(refusal).or_default() += 1;
                }
            });
        }
    }

    /// Returns the first item of each delivered order of `to_return`; drops those that can no
    /// longer be.
    async fn return_delivered(&self, buyer: usize, to_return: &mut Vec<ToReturn>) {
        let ready_after = SHIP_AFTER + DELIVER_AFTER;
        let mut kept = Vec::new();
        for order in std::mem::take(to_return) {
            if order.placed.elapsed() < ready_after || self.stop.is_cancelled() {
                kept.push(order);
                continue;
            }
            let token = &self.buyers[buyer].token;
            let Ok(reply) = self.api.get(&format!("/orders/{}", order.order_id), Some(token)).await else {
                kept.push(order);
                continue;
            };
            match reply.body["status"].as_str() {
                Some("delivered") => {
                    let Some(item_id) = reply.body["items"][0]["id"].as_str() else {
                        continue;
                    };
                    self.ledger.with(|ledger| ledger.returns_asked += 1);
                    let path = format!("/orders/{}/items/{item_id}/return", order.order_id);
                    if let Some(reply) = self.until_answered(buyer, &path).await
                        && reply.status.is_success()
                    {
                        self.ledger.with(|ledger| ledger.returns_done += 1);
                    }
                }
                Some("pending" | "paid" | "shipped") if order.placed.elapsed() < RETURN_GIVE_UP => kept.push(order),
                _ => {}
            }
        }
        *to_return = kept;
    }

    /// `POST path` (no body) as `buyer` until it is answered or the ordering ends.
    async fn until_answered(&self, buyer: usize, path: &str) -> Option<Reply> {
        let token = &self.buyers[buyer].token;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let outcome = self.api.post(path, Some(token), &json!({})).await;
            if !is_retryable(&outcome) {
                return outcome.ok();
            }
            self.ledger.count_error(&outcome);
            if !backoff.wait(&self.stop).await {
                return None;
            }
        }
    }

    /// Places `orders` orders at once, from the buyers in turn; returns when `share` of them
    /// are answered (or after `timeout`), leaving the rest running in `set`.
    pub async fn burst(self: &Arc<Self>, orders: usize, share: f64, timeout: Duration, set: &mut JoinSet<()>) {
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for i in 0..orders {
            let workload = Arc::clone(self);
            let answered = Arc::clone(&answered);
            set.spawn(async move {
                let key = format!("{}-burst-{i}", workload.run);
                workload.place(i % workload.buyers.len(), key).await;
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let wanted = (orders as f64 * share).ceil() as usize;
        let deadline = Instant::now() + timeout;
        while answered.load(std::sync::atomic::Ordering::SeqCst) < wanted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
