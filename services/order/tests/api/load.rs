//! A flash sale: 1,000 orders at once for a product with 100 in stock, placed concurrently
//! through gRPC, with one and with two order-service instances consuming the results. Exactly
//! 100 are paid, 900 rejected, the stock ends at 0, and no order is left waiting. And many
//! customers each sending their order several times at once: one order each.

use std::time::Duration;

use futures::{StreamExt as _, stream};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use shop_order::entity::{OrderStatus, PaymentStatus, payment};
use shop_platform::grpc::identity::Role;

use shop_proto::pb::order as pb;
use uuid::Uuid;

use crate::helpers::{Options, TestMesh, caller, place_on, spawn, spawn_with};

const ORDERS: usize = 1_000;
const STOCK: i64 = 100;
/// Calls in flight at once.
const CONCURRENCY: usize = 64;

async fn flash_sale(instances: usize) {
    let mesh = spawn_with(Options {
        instances,
        // Small bundles of results, so that two instances competing for them each get some:
        // a hundred results fit in two bundles of the default size, which one instance may take.
        catalog_env: &[("SHOP_OUTBOX_BUNDLE_SIZE", "4")],
        ..Options::default()
    })
    .await;
    let product = mesh.product(1_000, STOCK).await;
    let clients: Vec<_> = mesh.orders.iter().map(|instance| instance.client.clone()).collect();

    let started = std::time::Instant::now();
    let placed: Vec<_> = stream::iter(0..ORDERS)
        .map(|n| {
            let client = clients[n % clients.len()].clone();
            async move {
                let customer = caller(Role::Customer);
                place_on(&client, &customer, &format!("sale-{n}"), &[(product, 1)]).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let placing = started.elapsed();
    let failed: Vec<_> = placed
        .iter()
        .filter_map(|placed| placed.as_ref().err())
        .take(3)
        .collect();
    assert!(failed.is_empty(), "every order is placed; failures: {failed:?}");

    wait_until_settled(&mesh).await;
    eprintln!(
        "{ORDERS} orders, {instances} instance(s): placed in {placing:?}, settled in {:?}",
        started.elapsed()
    );
    assert_eq!(mesh.count(OrderStatus::Paid).await, STOCK as u64);
    assert_eq!(mesh.count(OrderStatus::Rejected).await, ORDERS as u64 - STOCK as u64);
    let captured = payment::Entity::find()
        .filter(payment::Column::Status.eq(PaymentStatus::Captured))
        .count(mesh.db())
        .await
        .unwrap();
    assert_eq!(captured, STOCK as u64);
    let by_instance = mesh.payments.captures_by_instance();
    assert_eq!(
        by_instance.values().sum::<usize>(),
        STOCK as usize,
        "one capture per paid order"
    );
    assert_eq!(
        by_instance.len(),
        instances,
        "every instance applied results: {by_instance:?}"
    );
    mesh.expect_stock(product, STOCK, 0).await;
}

async fn wait_until_settled(mesh: &TestMesh) {
    let settled = tokio::time::timeout(Duration::from_secs(90), async {
        while mesh.count(OrderStatus::Pending).await > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} orders still pending",
        mesh.count(OrderStatus::Pending).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_for_a_hundred_units_pay_exactly_a_hundred() {
    flash_sale(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_order_services_consuming_results_pay_exactly_a_hundred() {
    flash_sale(2).await;
}

#[tokio::test]
async fn many_customers_ordering_at_once_each_get_their_own_order_once() {
    let mesh = spawn().await;
    let product = mesh.product(1_000, 1_000).await;
    let customers: Vec<_> = (0..24).map(|_| caller(Role::Customer)).collect();
    // Each customer sends the same request three times at once, all 72 calls in flight:
    // placements share transactions, and duplicates within one must still make one order.
    let calls = customers.iter().flat_map(|customer| std::iter::repeat_n(customer, 3));
    let mesh = &mesh;
    let results: Vec<_> = stream::iter(calls)
        .map(|customer| async move { (customer.user_id, mesh.place(customer, "flash", &[(product, 1)]).await) })
        .buffer_unordered(72)
        .collect()
        .await;
    let mut orders: std::collections::HashMap<Uuid, Vec<String>> = std::collections::HashMap::new();
    for (user, result) in results {
        orders.entry(user).or_default().push(result.unwrap().id);
    }
    assert_eq!(orders.len(), 24);
    for customer in &customers {
        let ids = orders.get_mut(&customer.user_id).unwrap();
        ids.dedup();
        assert_eq!(ids.len(), 1, "one customer's calls answered different orders: {ids:?}");
        mesh.wait_for(customer, &ids[0], pb::OrderStatus::Paid).await;
    }
    mesh.expect_stock(product, 1_000, 976).await;
}
