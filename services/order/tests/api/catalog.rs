//! Products and stock through the real catalog service's API, and the catalog's invariant.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use shop_catalog::entity::reservation_line;
use shop_platform::testing::metrics::Scraper;
use shop_proto::pb::{
    catalog::{CreateProductRequest, DeleteProductRequest, GetStockRequest, SetStockRequest, UpdateProductRequest},
    common::Money,
};
use std::time::Duration;
use uuid::Uuid;

use crate::helpers::{PATIENCE, TestMesh, signed};

/// BatchGetProducts calls made to the catalog so far, by any service of this process (from a
/// real scrape of `rpc.client.duration`).
pub async fn catalog_batches(metrics: &Scraper) -> f64 {
    let labels = [
        r#"rpc_service="shop.catalog.v1.CatalogService""#,
        r#"rpc_method="BatchGetProducts""#,
    ];
    metrics.sum("rpc_client_duration_seconds_count", &labels).await
}

impl TestMesh {
    /// A visible product priced `price` KRW with `stock` units.
    pub async fn product(&self, price: i64, stock: i64) -> Uuid {
        self.product_in(price, "KRW", stock).await
    }

    /// A visible product priced `price` in `currency` with `stock` units.
    pub async fn product_in(&self, price: i64, currency: &str, stock: i64) -> Uuid {
        let request = CreateProductRequest {
            name: format!("Lamp {}", &Uuid::now_v7().simple().to_string()[24..]),
            description: String::new(),
            price: Some(Money {
                amount: price,
                currency: currency.into(),
            }),
            stock,
            visible: Some(true),
        };
        let product = self
            .catalog_client
            .clone()
            .create_product(signed(request, &self.seller))
            .await
            .unwrap()
            .into_inner()
            .product
            .unwrap();
        product.id.parse().unwrap()
    }

    /// Hides a product from buyers.
    pub async fn hide(&self, product: Uuid) {
        self.update(UpdateProductRequest {
            id: product.to_string(),
            visible: Some(false),
            ..Default::default()
        })
        .await;
    }

    /// Sets a product's price (KRW).
    pub async fn reprice(&self, product: Uuid, price: i64) {
        self.update(UpdateProductRequest {
            id: product.to_string(),
            price: Some(Money {
                amount: price,
                currency: "KRW".into(),
            }),
            ..Default::default()
        })
        .await;
    }

    /// Sets a product's available stock, as its seller.
    pub async fn set_stock(&self, product: Uuid, stock: i64) {
        let request = SetStockRequest {
            product_id: product.to_string(),
            stock,
        };
        self.catalog_client
            .clone()
            .set_stock(signed(request, &self.seller))
            .await
            .unwrap();
    }

    /// Changes a product as its seller.
    async fn update(&self, request: UpdateProductRequest) {
        self.catalog_client
            .clone()
            .update_product(signed(request, &self.seller))
            .await
            .unwrap();
    }

    /// Deletes a product.
    pub async fn delete(&self, product: Uuid) {
        let request = DeleteProductRequest {
            id: product.to_string(),
        };
        self.catalog_client
            .clone()
            .delete_product(signed(request, &self.seller))
            .await
            .unwrap();
    }

    /// The product's stock, as the catalog answers it.
    pub async fn stock(&self, product: Uuid) -> i64 {
        let request = GetStockRequest {
            product_id: product.to_string(),
        };
        self.catalog_client
            .clone()
            .get_stock(signed(request, &self.seller))
            .await
            .unwrap()
            .into_inner()
            .stock
    }

    /// Waits until the product's stock is `expected`, then checks the catalog's invariant:
    /// `initial = stock + reserved and not released`.
    pub async fn expect_stock(&self, product: Uuid, initial: i64, expected: i64) {
        let mut stock = self.stock(product).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while stock != expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            stock = self.stock(product).await;
        }
        assert_eq!(stock, expected, "stock of {product}");
        let held: i64 = reservation_line::Entity::find()
            .filter(reservation_line::Column::ProductId.eq(product))
            .all(&self.catalog.db)
            .await
            .unwrap()
            .iter()
            .map(|line| line.quantity - line.released)
            .sum();
        assert_eq!(initial, stock + held, "initial {initial} = stock {stock} + held {held}");
    }
}
