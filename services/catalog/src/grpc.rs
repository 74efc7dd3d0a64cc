//! The `shop.catalog.v1.CatalogService` rpcs: protobuf in, checked input, [`Products`], protobuf
//! out. Errors cross into `tonic::Status` here and nowhere else.

use shop_platform::grpc::convert::{parse_uuid, timestamp};
use shop_platform::grpc::identity::{Caller, Role};
use shop_proto::pb::{
    catalog::{self as pb, catalog_service_server::CatalogService as CatalogRpc},
    common::{Money, PageResponse},
};
use tonic::{Request, Response, Status};

use crate::{
    entity::product,
    products::{
        Products,
        input::{self, NewProduct, ProductPatch},
        listing::ListFilter,
    },
};

/// The gRPC face of [`Products`].
#[derive(Clone, Debug)]
pub struct CatalogApi {
    products: Products,
}

impl CatalogApi {
    /// Serves `products`.
    pub fn new(products: Products) -> Self {
        Self { products }
    }
}

/// The protobuf form of a product row.
pub fn to_pb(row: product::Model) -> pb::Product {
    pb::Product {
        id: row.id.to_string(),
        name: row.name,
        description: row.description,
        price: Some(Money {
            amount: row.price_amount,
            currency: row.currency,
        }),
        stock: row.stock,
        visible: row.visible,
        deleted: row.deleted_at.is_some(),
        seller_id: row.seller_id.to_string(),
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
    }
}

#[tonic::async_trait]
impl CatalogRpc for CatalogApi {
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        let caller = Caller::required(&request)?;
        // A customer is refused as such, whatever the request holds.
        caller.require_role(&[Role::Seller, Role::Admin])?;
        let new = NewProduct::try_from(request.into_inner())?;
        let row = self.products.create(&caller, new).await?;
        Ok(Response::new(pb::CreateProductResponse {
            product: Some(to_pb(row)),
        }))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        let caller = Caller::optional(&request);
        let id = parse_uuid(&request.get_ref().id, "id")?;
        let row = self.products.get(caller.as_ref(), id).await?;
        Ok(Response::new(pb::GetProductResponse {
            product: Some(to_pb(row)),
        }))
    }

    async fn batch_get_products(
        &self,
        request: Request<pb::BatchGetProductsRequest>,
    ) -> Result<Response<pb::BatchGetProductsResponse>, Status> {
        let ids = input::batch_ids(&request.get_ref().ids)?;
        let rows = self.products.batch_get(ids).await?;
        Ok(Response::new(pb::BatchGetProductsResponse {
            products: rows.into_iter().map(to_pb).collect(),
        }))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let filter = ListFilter::parse(request.get_ref())?;
        let (rows, next) = self.products.list(&filter).await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: rows.into_iter().map(to_pb).collect(),
            page: Some(PageResponse {
                next_cursor: next.unwrap_or_default(),
            }),
        }))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::UpdateProductResponse>, Status> {
        let caller = Caller::required(&request)?;
        let (id, patch) = ProductPatch::parse(request.into_inner())?;
        let row = self.products.update(&caller, id, patch).await?;
        Ok(Response::new(pb::UpdateProductResponse {
            product: Some(to_pb(row)),
        }))
    }

    async fn delete_product(
        &self,
        request: Request<pb::DeleteProductRequest>,
    ) -> Result<Response<pb::DeleteProductResponse>, Status> {
        let caller = Caller::required(&request)?;
        let id = parse_uuid(&request.get_ref().id, "id")?;
        self.products.delete(&caller, id).await?;
        Ok(Response::new(pb::DeleteProductResponse {}))
    }

    async fn set_stock(&self, request: Request<pb::SetStockRequest>) -> Result<Response<pb::SetStockResponse>, Status> {
        let caller = Caller::required(&request)?;
        let id = parse_uuid(&request.get_ref().product_id, "product_id")?;
        let stock = input::stock(request.get_ref().stock)?;
        let row = self.products.set_stock(&caller, id, stock).await?;
        Ok(Response::new(pb::SetStockResponse {
            product_id: row.id.to_string(),
            stock: row.stock,
        }))
    }

    async fn get_stock(&self, request: Request<pb::GetStockRequest>) -> Result<Response<pb::GetStockResponse>, Status> {
        let caller = Caller::optional(&request);
        let id = parse_uuid(&request.get_ref().product_id, "product_id")?;
        let row = self.products.get(caller.as_ref(), id).await?;
        Ok(Response::new(pb::GetStockResponse {
            product_id: row.id.to_string(),
            stock: row.stock,
        }))
    }
}
