//! The services PlaceOrder asks: the catalog for the products' current names and prices (one
//! batched call per order), and the user service for the caller's cart lines as stored (no
//! prices: the catalog call prices them with the rest), called with the caller's identity
//! forwarded.

use std::collections::HashMap;

use anyhow::Context as _;
use shop_platform::grpc::{
    client::{GrpcChannel, connect},
    error::ServiceError,
    identity::Caller,
    mesh::{CATALOG, MeshIdentity, USER},
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
        })
    }

    /// The products `ids` that can be sold now, in one call. An unknown, hidden or deleted
    /// product is FAILED_PRECONDITION `product_unavailable`, naming every such product.
    pub async fn products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Product>, ServiceError> {
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
                    },
                );
            }
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
