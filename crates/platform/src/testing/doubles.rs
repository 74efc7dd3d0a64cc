//! Doubles of the shop's gRPC services for tests of the platform's gRPC machinery (server,
//! client, mesh, traces), which need a real service to call but none of its logic.

use std::future::Future;

use shop_proto::pb::catalog::{
    self as catalog,
    catalog_service_server::{CatalogService, CatalogServiceServer},
};
use tonic::{Request, Response, Status};

/// A catalog that answers `GetStock` with the test's function and every other rpc with
/// UNIMPLEMENTED: the trait wants them all, and one rpc is all such a test calls.
#[derive(Clone, Debug)]
pub struct StockCatalog<F>(F);

impl<F, Fut> StockCatalog<F>
where
    F: Fn(Request<catalog::GetStockRequest>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<catalog::GetStockResponse, Status>> + Send + 'static,
{
    /// The catalog service answering `GetStock` with `answer`, ready to add to a server.
    pub fn server(answer: F) -> CatalogServiceServer<Self> {
        CatalogServiceServer::new(Self(answer))
    }
}

/// What every rpc but `GetStock` answers.
fn not_here<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in this test"))
}

#[tonic::async_trait]
impl<F, Fut> CatalogService for StockCatalog<F>
where
    F: Fn(Request<catalog::GetStockRequest>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<catalog::GetStockResponse, Status>> + Send + 'static,
{
    async fn get_stock(
        &self,
        request: Request<catalog::GetStockRequest>,
    ) -> Result<Response<catalog::GetStockResponse>, Status> {
        (self.0)(request).await.map(Response::new)
    }
    async fn create_product(
        &self,
        _: Request<catalog::CreateProductRequest>,
    ) -> Result<Response<catalog::CreateProductResponse>, Status> {
        not_here()
    }
    async fn get_product(
        &self,
        _: Request<catalog::GetProductRequest>,
    ) -> Result<Response<catalog::GetProductResponse>, Status> {
        not_here()
    }
    async fn batch_get_products(
        &self,
        _: Request<catalog::BatchGetProductsRequest>,
    ) -> Result<Response<catalog::BatchGetProductsResponse>, Status> {
        not_here()
    }
    async fn list_products(
        &self,
        _: Request<catalog::ListProductsRequest>,
    ) -> Result<Response<catalog::ListProductsResponse>, Status> {
        not_here()
    }
    async fn update_product(
        &self,
        _: Request<catalog::UpdateProductRequest>,
    ) -> Result<Response<catalog::UpdateProductResponse>, Status> {
        not_here()
    }
    async fn delete_product(
        &self,
        _: Request<catalog::DeleteProductRequest>,
    ) -> Result<Response<catalog::DeleteProductResponse>, Status> {
        not_here()
    }
    async fn set_stock(
        &self,
        _: Request<catalog::SetStockRequest>,
    ) -> Result<Response<catalog::SetStockResponse>, Status> {
        not_here()
    }
}
