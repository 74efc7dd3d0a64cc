//! The services PlaceOrder asks: the catalog for the products' current names, prices and
//! stock (one batched call per order, for the products it has not answered about within
//! `SHOP_ORDER_PRODUCT_TTL`: see [`RecentProducts`]), and the user service for the caller's
//! cart lines as stored (no prices: the catalog call prices them with the rest), called with
//! the caller's identity forwarded. The catalog's stock results refresh what it said about
//! stock in between ([`RecentProducts::learn_shortages`]).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use shop_platform::{
    bounded::{BoundedCache, CAPACITY},
    grpc::{
        client::{GrpcChannel, connect},
        error::ServiceError,
        identity::Caller,
        mesh::{CATALOG, MeshIdentity, USER},
    },
};
use shop_proto::pb::{
    catalog::{BatchGetProductsRequest, catalog_service_client::CatalogServiceClient},
    events::StockShortage,
    user::{GetCartLinesRequest, cart_service_client::CartServiceClient},
};
use tonic::{Request, Status};
use uuid::Uuid;

use crate::config::OrderConfig;

/// A product as the catalog sells it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Its name.
    pub name: String,
    /// Its unit price in minor units.
    pub price: i64,
    /// The price's currency.
    pub currency: String,
    /// The units available when the catalog answered (up to the TTL ago).
    pub stock: i64,
}

/// One line of the caller's cart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CartLine {
    /// The line's id.
    pub item_id: Uuid,
    /// The product.
    pub product_id: Uuid,
    /// How many.
    pub quantity: u32,
}

/// Clients of the catalog and of the user service's carts.
#[derive(Clone, Debug)]
pub struct Upstream {
    catalog: CatalogServiceClient<GrpcChannel>,
    carts: CartServiceClient<GrpcChannel>,
    recent: Arc<RecentProducts>,
}

/// One answer of the catalog about a product, and when it was asked.
#[derive(Clone, Debug)]
struct Answer {
    product: Product,
    /// When it was asked, for the TTL.
    at: Instant,
    /// The same instant on the wall clock, to compare with the catalog's later decisions.
    asked_at: DateTime<Utc>,
}

/// The catalog's recent answers about products for sale, reused for a short time.
///
/// In a flash sale thousands of orders a second name the same product: asking the catalog for
/// each cost a gRPC call and a PostgreSQL query per order, for an answer that changes rarely.
/// An order placed within the TTL of an answer takes its name and price from it, so a price
/// change or a product taken off sale applies to orders up to the TTL later, as it reaches the
/// product pages (the edge cache has the same bound). The stock it holds only ever refuses
/// orders: one asking for more than the catalog said was left is rejected at once (`place`);
/// any other is reserved by the catalog, whose reservation decides, and which refuses a
/// deleted product whatever the order says. Products not for sale are not remembered, so a
/// product put on sale is orderable at once.
///
/// The catalog's stock rejections lower the stock of the answers they are newer than
/// ([`Self::learn_shortages`]): in a flash sale the last unit goes within the TTL of the
/// answer, and every order until that answer expired went to the catalog to be refused.
#[derive(Debug)]
pub(crate) struct RecentProducts {
    ttl: Duration,
    answers: BoundedCache<Uuid, Answer>,
}

impl RecentProducts {
    /// Answers kept for `ttl` (none with zero).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            answers: BoundedCache::new(CAPACITY),
        }
    }

    fn fresh(&self, answer: &Answer) -> bool {
        answer.at.elapsed() < self.ttl
    }

    /// What a stock rejection the catalog decided at `decided_at` says was left of each short
    /// product: a remembered answer asked before that decision keeps it as its stock if lower,
    /// and expires when it would have. An answer asked after the decision is left alone (a
    /// restock may have come between), so the stock an order sees is never older than the
    /// answer it was given, and a restock reaches orders within the TTL as before. The two
    /// times come from the two services' clocks: a skew between them only widens or narrows the
    /// answers this applies to by that much. A newer answer stored between the read and the
    /// write below is replaced by the older, lowered one, which keeps its own age: it expires no
    /// later than it would have, and the order after it asks the catalog again.
    pub(crate) fn learn_shortages(&self, short: &[StockShortage], decided_at: DateTime<Utc>) {
        if self.ttl.is_zero() {
            return;
        }
        for shortage in short {
            let Ok(id) = Uuid::parse_str(&shortage.product_id) else {
                continue;
            };
            let Some(mut answer) = self.answers.get(&id, |answer| self.fresh(answer)) else {
                continue;
            };
            if answer.asked_at < decided_at && shortage.available < answer.product.stock {
                answer.product.stock = shortage.available;
                self.answers.insert(id, answer, |answer| self.fresh(answer));
            }
        }
    }

    /// The remembered answers for `ids`, and the ids to ask the catalog about.
    fn split(&self, ids: &[Uuid]) -> (HashMap<Uuid, Product>, Vec<Uuid>) {
        if self.ttl.is_zero() {
            return (HashMap::new(), ids.to_vec());
        }
        let mut known = HashMap::new();
        let mut ask = Vec::new();
        for id in ids {
            match self.answers.get(id, |answer| self.fresh(answer)) {
                Some(answer) => {
                    known.insert(*id, answer.product);
                }
                None => ask.push(*id),
            }
        }
        (known, ask)
    }

    fn remember(&self, fetched: &HashMap<Uuid, Product>, at: Instant, asked_at: DateTime<Utc>) {
        if self.ttl.is_zero() || fetched.is_empty() {
            return;
        }
        for (id, product) in fetched {
            let answer = Answer {
                product: product.clone(),
                at,
                asked_at,
            };
            self.answers.insert(*id, answer, |answer| self.fresh(answer));
        }
    }
}

impl Upstream {
    /// Channels to the catalog and user targets of `config` (nothing is called yet), keeping
    /// the catalog's answers in `recent`.
    pub(crate) async fn connect(
        config: &OrderConfig,
        mesh: &MeshIdentity,
        recent: Arc<RecentProducts>,
    ) -> anyhow::Result<Self> {
        let catalog = connect(&config.catalog, &config.client)
            .await
            .context("connecting to the catalog")?;
        let users = connect(&config.user, &config.client)
            .await
            .context("connecting to the user service")?;
        Ok(Self {
            catalog: CatalogServiceClient::new(catalog.signed_by(mesh, CATALOG)),
            carts: CartServiceClient::new(users.signed_by(mesh, USER)),
            recent,
        })
    }

    /// The products `ids` that can be sold, as the catalog answered within the TTL or, for the
    /// others, answers now in one call. An unknown, hidden or deleted product is
    /// FAILED_PRECONDITION `product_unavailable`, naming every such product.
    pub async fn products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Product>, ServiceError> {
        let (mut products, ask) = self.recent.split(ids);
        if !ask.is_empty() {
            let (at, asked_at) = (Instant::now(), Utc::now());
            let fetched = self.fetch_products(&ask).await?;
            self.recent.remember(&fetched, at, asked_at);
            products.extend(fetched);
        }
        let unavailable: Vec<String> = ids
            .iter()
            .filter(|id| !products.contains_key(id))
            .map(Uuid::to_string)
            .collect();
        if !unavailable.is_empty() {
            return Err(ServiceError::FailedPrecondition {
                code: "product_unavailable",
                message: format!("not for sale (unknown, hidden or deleted): {}", unavailable.join(", ")),
            });
        }
        Ok(products)
    }

    /// Those of `ids` the catalog sells now, in one call.
    async fn fetch_products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Product>, ServiceError> {
        let request = BatchGetProductsRequest {
            ids: ids.iter().map(Uuid::to_string).collect(),
        };
        let reply = self
            .catalog
            .clone()
            .batch_get_products(request)
            .await
            .map_err(|status| upstream_error("catalog", status))?
            .into_inner();
        let mut products = HashMap::new();
        for product in reply.products {
            let id = Uuid::parse_str(&product.id)
                .with_context(|| format!("the catalog answered a malformed product id {:?}", product.id))?;
            let price = product.price.unwrap_or_default();
            if product.visible && !product.deleted && price.amount >= 0 {
                products.insert(
                    id,
                    Product {
                        name: product.name,
                        price: price.amount,
                        currency: price.currency,
                        stock: product.stock,
                    },
                );
            }
        }
        Ok(products)
    }

    /// The lines of the caller's cart as stored, oldest first.
    pub async fn cart_lines(&self, caller: &Caller) -> Result<Vec<CartLine>, ServiceError> {
        let mut request = Request::new(GetCartLinesRequest {});
        caller.attach(&mut request);
        let lines = self
            .carts
            .clone()
            .get_cart_lines(request)
            .await
            .map_err(|status| upstream_error("user service", status))?
            .into_inner()
            .lines;
        lines
            .into_iter()
            .map(|line| {
                let parse =
                    |raw: &str| Uuid::parse_str(raw).with_context(|| format!("the cart holds a malformed id {raw:?}"));
                Ok(CartLine {
                    item_id: parse(&line.id)?,
                    product_id: parse(&line.product_id)?,
                    quantity: line.quantity,
                })
            })
            .collect()
    }
}

/// A failed call to another service (see `upstream_failure`).
fn upstream_error(service: &str, status: Status) -> ServiceError {
    shop_platform::grpc::error::upstream_failure(service, &status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(stock: i64) -> Product {
        Product {
            name: "Lamp".to_owned(),
            price: 2_000,
            currency: "EUR".to_owned(),
            stock,
        }
    }

    fn shortage(id: Uuid, available: i64) -> StockShortage {
        StockShortage {
            product_id: id.to_string(),
            requested: 1,
            available,
        }
    }

    /// Remembers `stock` for a new product, asked at `asked_at`; returns its id.
    fn remembered(recent: &RecentProducts, stock: i64, asked_at: DateTime<Utc>) -> Uuid {
        let id = Uuid::now_v7();
        recent.remember(&HashMap::from([(id, product(stock))]), Instant::now(), asked_at);
        id
    }

    fn stock(recent: &RecentProducts, id: Uuid) -> Option<i64> {
        recent.split(&[id]).0.get(&id).map(|product| product.stock)
    }

    #[test]
    fn a_rejection_lowers_only_answers_asked_before_it_was_decided() {
        let recent = RecentProducts::new(Duration::from_secs(60));
        let now = Utc::now();
        let older = remembered(&recent, 5, now - chrono::Duration::seconds(1));
        let newer = remembered(&recent, 5, now + chrono::Duration::seconds(1));
        recent.learn_shortages(&[shortage(older, 0), shortage(newer, 0)], now);
        assert_eq!(stock(&recent, older), Some(0), "decided after the answer was asked");
        // Asked after the decision: a restock may have come between.
        assert_eq!(stock(&recent, newer), Some(5));
    }

    #[test]
    fn a_rejection_never_raises_the_stock_nor_remembers_what_was_not_asked() {
        let recent = RecentProducts::new(Duration::from_secs(60));
        let now = Utc::now();
        let id = remembered(&recent, 2, now - chrono::Duration::seconds(1));
        recent.learn_shortages(&[shortage(id, 7)], now);
        assert_eq!(stock(&recent, id), Some(2));
        let unknown = Uuid::now_v7();
        recent.learn_shortages(&[shortage(unknown, 0)], now);
        assert_eq!(stock(&recent, unknown), None);
        // Without a TTL nothing is kept, and nothing learnt.
        let uncached = RecentProducts::new(Duration::ZERO);
        let id = remembered(&uncached, 2, now - chrono::Duration::seconds(1));
        uncached.learn_shortages(&[shortage(id, 0)], now);
        assert_eq!(stock(&uncached, id), None);
    }
}
