//! Orders from the cart, with the real user service: the cart's lines are priced by the order's
//! one catalog call, and the lines bought leave the cart when the user service consumes the
//! order's OrderPlaced message, however long it was down meanwhile.

use shop_platform::testing::metrics::Scraper;
use shop_proto::pb::order::OrderStatus;
use tonic::Code;

use crate::{
    cart::ids,
    catalog::catalog_batches,
    helpers::{Options, PATIENCE, TestMesh, code_of, spawn_with},
};

/// The mesh with the user service.
async fn with_users(options: Options) -> TestMesh {
    spawn_with(Options { users: true, ..options }).await
}

#[tokio::test]
async fn an_order_from_the_cart_asks_the_catalog_once_and_its_lines_leave_the_cart() {
    let metrics = Scraper::install();
    let mesh = with_users(Options::default()).await;
    let lamp = mesh.product(12_900, 5).await;
    let bulb = mesh.product(500, 50).await;
    let desk = mesh.product(30_000, 2).await;
    let customer = mesh.customer().await;

    let empty = mesh.place_from_cart(&customer, "empty").await.unwrap_err();
    assert_eq!(code_of(&empty), (Code::FailedPrecondition, "cart_empty".into()));

    let lamp_line = mesh.add_to_cart(&customer, lamp, 1).await;
    let bulb_line = mesh.add_to_cart(&customer, bulb, 10).await;
    let asked = catalog_batches(&metrics).await;
    let placed = mesh.place_from_cart(&customer, "cart").await.unwrap();
    assert_eq!(
        catalog_batches(&metrics).await - asked,
        1.0,
        "the cart's lines are priced by the order's one catalog call"
    );
    assert_eq!(placed.total.as_ref().unwrap().amount, 12_900 + 5_000);
    let quantities: Vec<(String, u32)> = placed
        .items
        .iter()
        .map(|i| (i.product_id.clone(), i.quantity))
        .collect();
    assert_eq!(quantities, vec![(lamp.to_string(), 1), (bulb.to_string(), 10)]);

    // A line added after the order stays; the bought ones go, shortly after the answer.
    let desk_line = mesh.add_to_cart(&customer, desk, 1).await;
    let left = mesh
        .wait_for_cart(&customer, |lines| {
            !ids(lines).contains(&lamp_line.as_str()) && !ids(lines).contains(&bulb_line.as_str())
        })
        .await;
    assert_eq!(ids(&left), [desk_line.as_str()]);

    // A retry with the key is the same request whatever the cart holds now, and takes nothing
    // more from it.
    let again = mesh.place_from_cart(&customer, "cart").await.unwrap();
    assert_eq!(again.id, placed.id);
    assert_eq!(
        ids(&mesh.cart(&customer).await),
        [desk_line.as_str()],
        "the new line stays"
    );
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
    mesh.expect_stock(lamp, 5, 4).await;
    mesh.expect_stock(bulb, 50, 40).await;
}

#[tokio::test]
async fn the_lines_an_order_bought_leave_the_cart_once_the_user_service_is_back() {
    // No relay at first: the order's messages stay in its outbox until one runs.
    let mut mesh = with_users(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    let lamp = mesh.product(12_900, 5).await;
    let customer = mesh.customer().await;
    let lamp_line = mesh.add_to_cart(&customer, lamp, 2).await;
    let placed = mesh.place_from_cart(&customer, "cart").await.unwrap();
    // The answer does not wait for the cart: the lines go with the order's OrderPlaced.
    assert_eq!(ids(&mesh.cart(&customer).await), [lamp_line.as_str()]);

    // The user service goes down; then the message goes out, and waits in its queue.
    mesh.stop_users().await;
    mesh.start_order_service(true).await;
    mesh.wait_until_placed_queue_holds(1).await;

    // Back, the user service takes the bought lines out of the cart.
    mesh.restart_users().await;
    mesh.wait_for_cart(&customer, <[_]>::is_empty).await;
    mesh.wait_until_placed_queue_holds(0).await;
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
}

#[tokio::test]
async fn an_order_from_the_cart_leaves_the_cart_on_sqlite_and_the_in_process_queue() {
    let mesh = with_users(Options {
        embedded: true,
        ..Options::default()
    })
    .await;
    let lamp = mesh.product(12_900, 5).await;
    let customer = mesh.customer().await;
    mesh.add_to_cart(&customer, lamp, 1).await;
    let placed = mesh.place_from_cart(&customer, "cart").await.unwrap();
    mesh.wait_for_cart(&customer, <[_]>::is_empty).await;
    mesh.wait_for(&customer, &placed.id, OrderStatus::Paid).await;
}

impl TestMesh {
    /// Waits until the queue of OrderPlaced holds `count` messages ready (for at most
    /// [`PATIENCE`]).
    async fn wait_until_placed_queue_holds(&self, count: u64) {
        let queue = &self.catalog.backends().queue;
        let name = &self.config.order_queues.placed;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let held = queue.message_count(name).await.unwrap();
            if held == Some(count) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} holds {held:?}, not {count}, after {PATIENCE:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

#[tokio::test]
async fn a_sold_out_order_from_the_cart_is_rejected_and_its_lines_still_leave_the_cart() {
    let mesh = with_users(Options::default()).await;
    let lamp = mesh.product(12_900, 0).await;
    let customer = mesh.customer().await;
    let lamp_line = mesh.add_to_cart(&customer, lamp, 1).await;
    let placed = mesh.place_from_cart(&customer, "sold-out").await.unwrap();
    assert_eq!(placed.status(), OrderStatus::Pending, "answered as accepted");
    let rejected = mesh.wait_for(&customer, &placed.id, OrderStatus::Rejected).await;
    assert_eq!(rejected.status_reason, Some(format!("out_of_stock: {lamp}")));
    // Rejected at placement, its OrderPlaced still went out: the line it bought leaves the
    // cart, as when the catalog rejects an order.
    mesh.wait_for_cart(&customer, |lines| !ids(lines).contains(&lamp_line.as_str()))
        .await;
    mesh.expect_stock(lamp, 0, 0).await;
}
