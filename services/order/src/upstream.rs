//! The services PlaceOrder asks: the catalog for the products' current names, prices and
//! stock (one batched call per order, for the products it has not answered about within
//! `SHOP_ORDER_PRODUCT_TTL`: see [`RecentProducts`]), and the user service for the caller's
//! cart lines as stored (no prices: the catalog call prices them with the rest), called with
//! the caller's identity forwarded.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
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
#[derive(Debug)]
struct RecentProducts {
    ttl: Duration,
    answers: BoundedCache<Uuid, (Product, Instant)>,
}

impl RecentProducts {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            answers: BoundedCache::new(CAPACITY),
        }
    }

    fn fresh(&self, (_, at): &(Product, Instant)) -> bool {
        at.elapsed() < self.ttl
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
                Some((product, _)) => {
                    known.insert(*id, product);
                }
                None => ask.push(*id),
            }
        }
        (known, ask)
    }

    fn remember(&self, fetched: &HashMap<Uuid, Product>, at: Instant) {
        if self.ttl.is_zero() || fetched.is_empty() {
            return;
        }
        for (id, product) in fetched {
            self.answers
                .insert(*id, (product.clone(), at), |answer| self.fresh(answer));
        }
    }
}

impl Upstream {
    /// Channels to the catalog and user targets of `config` (nothing is called yet).
    pub async fn connect(config: &OrderConfig, mesh: &MeshIdentity) -> anyhow::Result<Self> {
        let catalog = connect(&config.catalog, &config.client)
            .await
            .context("connecting to the catalog")?;
        let users = connect(&config.user, &config.client)
            .await
            .context("connecting to the user service")?;
        Ok(Self {
            catalog: CatalogServiceClient::new(catalog.signed_by(mesh, CATALOG)),
            carts: CartServiceClient::new(users.signed_by(mesh, USER)),
            recent: Arc::new(RecentProducts::new(config.product_ttl)),
        })
    }

    /// The products `ids` that can be sold, as the catalog answered within the TTL or, for the
    /// others, answers now in one call. An unknown, hidden or deleted product is
    /// FAILED_PRECONDITION `product_unavailable`, naming every such product.
    pub async fn products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Product>, ServiceError> {
        let (mut products, ask) = self.recent.split(ids);
        if !ask.is_empty() {
            let asked_at = Instant::now();
            let fetched = self.fetch_products(&ask).await?;
            self.recent.remember(&fetched, asked_at);
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
