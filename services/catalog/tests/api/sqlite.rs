//! The embedded one-process run: the same service on SQLite and the in-process queue.

use std::time::Duration;

use sea_orm::EntityTrait as _;
use shop_catalog::entity::reservation;
use shop_platform::grpc::identity::Role;
use shop_proto::pb::{
    catalog::{CreateProductRequest, ListProductsRequest},
    common::{Money, PageRequest},
};
use uuid::Uuid;

use crate::helpers::{caller, release_message, signed, spawn_embedded_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serves_products_and_applies_reservations() {
    let app = spawn_embedded_app().await;
    let mut client = app.client().await;
    let seller = caller(Role::Seller);
    let mut ids = Vec::new();
    for name in ["Paper 50% recycled", "Paper plain", "Pen"] {
        let request = CreateProductRequest {
            name: name.into(),
            description: String::new(),
            price: Some(Money {
                amount: 1_000,
                currency: "USD".into(),
            }),
            stock: 4,
            visible: None,
        };
        let product = client
            .create_product(signed(request, &seller))
            .await
            .unwrap()
            .into_inner();
        ids.push(product.product.unwrap().id);
    }
    let page = |query: &str, cursor: &str| ListProductsRequest {
        query: query.into(),
        page: Some(PageRequest {
            limit: 1,
            cursor: cursor.into(),
        }),
        ..Default::default()
    };
    let first = client.list_products(page("PAPER", "")).await.unwrap().into_inner();
    assert_eq!(first.products[0].id, ids[1], "newest first, case-insensitive");
    let cursor = first.page.unwrap().next_cursor;
    let second = client.list_products(page("PAPER", &cursor)).await.unwrap().into_inner();
    assert_eq!(second.products[0].id, ids[0]);
    assert!(second.page.unwrap().next_cursor.is_empty());
    let literal = client.list_products(page("50%", "")).await.unwrap().into_inner();
    assert_eq!(literal.products.len(), 1);
    let none = client.list_products(page("0%r", "")).await.unwrap().into_inner();
    assert!(none.products.is_empty(), "% is not a wildcard");

    let product: Uuid = ids[2].parse().unwrap();
    // Two consumers compete, so either order may come first; exactly one fits.
    let orders = [Uuid::now_v7(), Uuid::now_v7()];
    for order in orders {
        app.reserve(order, &[(product, 3)]).await;
    }
    app.wait_for_reservations(2, Duration::from_secs(20)).await;
    assert_eq!(app.reservations(Some(reservation::RESERVED)).await, 1);
    assert_eq!(app.stock(product).await, 1);
    let mut order = orders[0];
    if let Some(row) = reservation::Entity::find_by_id(order).one(&app.db).await.unwrap()
        && row.status != reservation::RESERVED
    {
        order = orders[1];
    }
    let release = release_message(order, order, &[(product, 3)]);
    app.publish_release(vec![release.clone(), release]).await;
    app.wait_for_releases(1, Duration::from_secs(20)).await;
    app.wait_for_inbox(3, Duration::from_secs(20)).await;
    assert_eq!(app.stock(product).await, 4);
    app.assert_invariant(&[(product, 4)]).await;
    app.stop().await;
}
