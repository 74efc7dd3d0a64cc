//! `browse`: virtual users, each with an account signed up for real before the run, doing
//! Online Boutique's locust mix: list products 10, view a product 10, add to cart 2, view the
//! cart 3, check out 1 (`POST /orders` from the cart with an `Idempotency-Key`; a user whose
//! cart is empty adds a product first, as locust's checkout does).

use std::sync::Arc;

use rand::Rng as _;
use reqwest::Method;
use serde_json::json;
use tokio::time::Instant;

use crate::{
    driver::{Limit, Workload},
    http::{self, Endpoint},
    options::Options,
    people,
    report::Report,
    stats::Recorder,
    target::Shop,
};

/// The operations and their weights.
const MIX: [(Action, u32); 5] = [
    (Action::List, 10),
    (Action::View, 10),
    (Action::AddToCart, 2),
    (Action::ViewCart, 3),
    (Action::Checkout, 1),
];

/// One browsing action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    List,
    View,
    AddToCart,
    ViewCart,
    Checkout,
}

/// The action a roll in `0..26` picks.
fn pick(mut roll: u32) -> Action {
    for (action, weight) in MIX {
        if roll < weight {
            return action;
        }
        roll -= weight;
    }
    Action::List
}

/// A signed-in virtual user.
#[derive(Debug)]
pub struct Visitor {
    n: usize,
    token: String,
    cart_lines: usize,
    checkouts: u64,
}

/// The mix over the products on sale.
#[derive(Debug)]
struct Browse {
    endpoint: Endpoint,
    recorder: Arc<Recorder>,
    products: Vec<String>,
    run: String,
}

impl Browse {
    async fn add_to_cart(&self, visitor: &mut Visitor, started: Instant) {
        let product = &self.products[rand::rng().random_range(0..self.products.len())];
        let quantity = rand::rng().random_range(1..=3);
        let request = self
            .endpoint
            .request(Method::POST, "/api/v1/cart/items", Some(&visitor.token))
            .json(&json!({ "product_id": product, "quantity": quantity }));
        if let Some((201, _)) = http::measure(&self.recorder, "POST /cart/items", request, started).await {
            visitor.cart_lines += 1;
        }
    }
}

impl Workload for Browse {
    type User = Visitor;

    async fn step(&self, visitor: &mut Visitor, _seq: u64, intended: Instant) {
        let total: u32 = MIX.iter().map(|(_, weight)| weight).sum();
        let action = pick(rand::rng().random_range(0..total));
        let token = visitor.token.clone();
        let get = |path: &str| self.endpoint.request(Method::GET, path, Some(&token));
        match action {
            Action::List => {
                http::measure(
                    &self.recorder,
                    "GET /products",
                    get("/api/v1/products?limit=20"),
                    intended,
                )
                .await;
            }
            Action::View => {
                let product = &self.products[rand::rng().random_range(0..self.products.len())];
                let path = format!("/api/v1/products/{product}");
                http::measure(&self.recorder, "GET /products/{id}", get(&path), intended).await;
            }
            Action::AddToCart => self.add_to_cart(visitor, intended).await,
            Action::ViewCart => {
                http::measure(&self.recorder, "GET /cart", get("/api/v1/cart"), intended).await;
            }
            Action::Checkout => {
                let mut started = intended;
                if visitor.cart_lines == 0 {
                    self.add_to_cart(visitor, started).await;
                    started = Instant::now();
                }
                visitor.checkouts += 1;
                let key = format!("{}-{}-{}", self.run, visitor.n, visitor.checkouts);
                let request = self
                    .endpoint
                    .request(Method::POST, "/api/v1/orders", Some(&visitor.token))
                    .header("Idempotency-Key", key)
                    .json(&json!({ "from_cart": true }));
                if let Some((202, _)) = http::measure(&self.recorder, "POST /orders", request, started).await {
                    // The ordered lines leave the cart (shortly after the 202).
                    visitor.cart_lines = 0;
                }
            }
        }
    }
}

/// Runs the scenario on `shop`.
pub async fn run(shop: &Shop, http: &reqwest::Client, options: &Options) -> anyhow::Result<Report> {
    let admin = people::admin(shop).await?;
    // Stock enough for any run: browsing never runs out.
    let products = people::products(shop, &admin, "Boutique item", options.products, 1_000_000_000).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let count = options.users.unwrap_or(options.connections);
    eprintln!("signing up {count} virtual users…");
    let accounts = people::users(shop, &run, count).await?;
    let visitors: Vec<Visitor> = accounts
        .into_iter()
        .enumerate()
        .map(|(n, account)| Visitor {
            n,
            token: account.token,
            cart_lines: 0,
            checkouts: 0,
        })
        .collect();
    let recorder = Arc::new(Recorder::default());
    let browse = Arc::new(Browse {
        endpoint: Endpoint::new(http.clone(), &shop.origin),
        recorder: Arc::clone(&recorder),
        products: products.into_iter().map(|product| product.id).collect(),
        run,
    });
    // Closed loop: one visitor per connection (the others wait); open loop: all of them.
    let visitors = match options.rate {
        None => visitors.into_iter().take(options.connections).collect(),
        Some(_) => visitors,
    };
    let limit = Limit {
        duration: Some(options.duration),
        steps: None,
    };
    let elapsed = super::timed("browse", browse, visitors, &recorder, options, limit).await;
    Ok(Report::new(options, recorder.summarize(elapsed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_pick_actions_in_online_boutiques_proportions() {
        let picked: Vec<Action> = (0..26).map(pick).collect();
        let count = |action| picked.iter().filter(|picked| **picked == action).count();
        assert_eq!(count(Action::List), 10);
        assert_eq!(count(Action::View), 10);
        assert_eq!(count(Action::AddToCart), 2);
        assert_eq!(count(Action::ViewCart), 3);
        assert_eq!(count(Action::Checkout), 1);
    }
}
