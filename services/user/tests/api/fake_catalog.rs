//! A catalog double for the user service's tests: a product table behind the real
//! CatalogService contract, served over gRPC, counting BatchGetProducts calls. The real catalog
//! is exercised by the end-to-end tests of the one-process mesh.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use shop_proto::pb::{
    catalog::{self as catalog_pb, Product},
    common::Money,
};
use tonic::{Request, Response, Status};

/// A catalog double: a fixed product table behind the real CatalogService contract, counting
/// BatchGetProducts calls.
#[derive(Clone, Default)]
pub struct FakeCatalog {
    products: Arc<Mutex<HashMap<String, Product>>>,
    batch_calls: Arc<AtomicUsize>,
}

impl FakeCatalog {
    /// Adds a visible product; returns its id.
    pub fn add(&self, name: &str, amount: i64, currency: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let product = Product {
            id: id.clone(),
            name: name.to_owned(),
            price: Some(Money {
                amount,
                currency: currency.to_owned(),
            }),
            stock: 10,
            visible: true,
            seller_id: uuid::Uuid::now_v7().to_string(),
            ..Product::default()
        };
        self.products.lock().unwrap().insert(id.clone(), product);
        id
    }

    /// Changes a product.
    pub fn edit(&self, id: &str, change: impl FnOnce(&mut Product)) {
        change(self.products.lock().unwrap().get_mut(id).expect("a known product"));
    }

    /// Forgets a product entirely (an id the catalog never knew).
    pub fn forget(&self, id: &str) {
        self.products.lock().unwrap().remove(id);
    }

    /// BatchGetProducts calls so far.
    pub fn batch_calls(&self) -> usize {
        self.batch_calls.load(Ordering::SeqCst)
    }
}

#[tonic::async_trait]
impl catalog_pb::catalog_service_server::CatalogService for FakeCatalog {
    async fn batch_get_products(
        &self,
        request: Request<catalog_pb::BatchGetProductsRequest>,
    ) -> Result<Response<catalog_pb::BatchGetProductsResponse>, Status> {
        self.batch_calls.fetch_add(1, Ordering::SeqCst);
        let ids = request.into_inner().ids;
        if ids.len() > 100 {
            return Err(Status::invalid_argument("more than 100 ids"));
        }
        let products = self.products.lock().unwrap();
        Ok(Response::new(catalog_pb::BatchGetProductsResponse {
            products: ids.iter().filter_map(|id| products.get(id).cloned()).collect(),
        }))
    }
    async fn get_product(
        &self,
        request: Request<catalog_pb::GetProductRequest>,
    ) -> Result<Response<catalog_pb::GetProductResponse>, Status> {
        let products = self.products.lock().unwrap();
        let product = products
            .get(&request.get_ref().id)
            .filter(|product| product.visible && !product.deleted)
            .cloned()
            .ok_or_else(|| Status::not_found("no such product"))?;
        Ok(Response::new(catalog_pb::GetProductResponse { product: Some(product) }))
    }
    async fn create_product(
        &self,
        _: Request<catalog_pb::CreateProductRequest>,
    ) -> Result<Response<catalog_pb::CreateProductResponse>, Status> {
        Err(Status::unimplemented("not served by the catalog double"))
    }
    async fn list_products(
        &self,
        _: Request<catalog_pb::ListProductsRequest>,
    ) -> Result<Response<catalog_pb::ListProductsResponse>, Status> {
        Err(Status::unimplemented("not served by the catalog double"))
    }
    async fn update_product(
        &self,
        _: Request<catalog_pb::UpdateProductRequest>,
    ) -> Result<Response<catalog_pb::UpdateProductResponse>, Status> {
        Err(Status::unimplemented("not served by the catalog double"))
    }
    async fn delete_product(
        &self,
        _: Request<catalog_pb::DeleteProductRequest>,
    ) -> Result<Response<catalog_pb::DeleteProductResponse>, Status> {
        Err(Status::unimplemented("not served by the catalog double"))
    }
    async fn set_stock(
        &self,
        _: Request<catalog_pb::SetStockRequest>,
    ) -> Result<Response<catalog_pb::SetStockResponse>, Status> {
        Err(Status::unimplemented("not served by the catalog double"))
    }
    async fn get_stock(
        &self,
        _: Request<catalog_pb::GetStockRequest>,
    ) -> Result<Response<catalog_pb::GetStockResponse>, Status> {
        Err(Status::unimplemented("not served by the catalog double"))
    }
}
