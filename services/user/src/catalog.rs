//! The catalog as the user service sees it: live product details for wishlists and carts, always
//! in ONE `BatchGetProducts` call per request, made on the caller's behalf (identity forwarded).

use std::collections::{BTreeSet, HashMap};

use shop_platform::grpc::{
    client::{ClientOptions, GrpcChannel, Target, connect},
    error::ServiceError,
    identity::Caller,
    mesh::{CATALOG, MeshIdentity},
};
use shop_proto::pb::catalog::{BatchGetProductsRequest, Product, catalog_service_client::CatalogServiceClient};
use uuid::Uuid;

/// The most ids one `BatchGetProducts` call takes (catalog contract); wishlists and carts are
/// capped at this many entries so that a listing is always one call.
pub const MAX_BATCH: usize = 100;

/// A client of the catalog service.
#[derive(Clone, Debug)]
pub struct Catalog {
    client: CatalogServiceClient<GrpcChannel>,
}

impl Catalog {
    /// A client balanced over `target`'s endpoints; never fails because the catalog is down.
    pub async fn connect(target: &Target, mesh: &MeshIdentity) -> anyhow::Result<Self> {
        let channel = connect(target, &ClientOptions::default()).await?;
        Ok(Self::new(channel.signed_by(mesh, CATALOG)))
    }

    /// A client over an existing channel.
    pub fn new(channel: GrpcChannel) -> Self {
        Self {
            client: CatalogServiceClient::new(channel),
        }
    }

    /// The known products among `ids` (hidden and deleted ones included), by id, in one call.
    pub async fn products(
        &self,
        caller: &Caller,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<HashMap<Uuid, Product>, ServiceError> {
        let ids: BTreeSet<Uuid> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        if ids.len() > MAX_BATCH {
            return Err(ServiceError::Unexpected(anyhow::anyhow!(
                "{} products asked for in one batch",
                ids.len()
            )));
        }
        let mut request = tonic::Request::new(BatchGetProductsRequest {
            ids: ids.iter().map(Uuid::to_string).collect(),
        });
        caller.attach(&mut request);
        let reply = self
            .client
            .clone()
            .batch_get_products(request)
            .await
            .map_err(catalog_error)?;
        Ok(reply
            .into_inner()
            .products
            .into_iter()
            .filter_map(|product| {
                let id = product.id.parse().ok()?;
                ids.contains(&id).then_some((id, product))
            })
            .collect())
    }

    /// The product `id` if it may be put in a wishlist or cart: known, visible and not deleted;
    /// NOT_FOUND `product_not_found` otherwise.
    pub async fn listed_product(&self, caller: &Caller, id: Uuid) -> Result<Product, ServiceError> {
        self.products(caller, [id])
            .await?
            .remove(&id)
            .filter(|product| product.visible && !product.deleted)
            .ok_or_else(|| ServiceError::NotFound {
                code: "product_not_found",
                message: format!("no product {id}"),
            })
    }
}

/// A failed catalog call (see `upstream_failure`).
fn catalog_error(status: tonic::Status) -> ServiceError {
    shop_platform::grpc::error::upstream_failure("catalog", &status)
}

/// A product as wishlists and carts show it: absent when it no longer exists (unknown or
/// deleted); hidden products are shown with `visible` false.
pub fn shown(product: Option<&Product>) -> Option<Product> {
    product.filter(|product| !product.deleted).cloned()
}
