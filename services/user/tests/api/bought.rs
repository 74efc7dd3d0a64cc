//! The order service's side of carts: GetCartLines (the lines as stored, without a catalog
//! call) and the consumer of OrderPlaced, which takes the lines an order bought out of the
//! customer's cart, and only those, once however often it is delivered.

use std::{collections::BTreeMap, time::Duration};

use prost::Message as _;
use shop_platform::queue::{Message, dead_letter_queue_name};
use shop_proto::pb::{events, user as pb};

use crate::{
    helpers::{TestApp, TestUser, as_caller, spawn_app},
    wishlist_cart::{cart, put},
};

/// How long the consumer may take.
const PATIENCE: Duration = Duration::from_secs(10);

async fn cart_lines(app: &TestApp, user: &TestUser) -> Vec<pb::CartLine> {
    app.cart
        .clone()
        .get_cart_lines(as_caller(&user.caller, pb::GetCartLinesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .lines
}

/// An OrderPlaced as the order service's outbox relay publishes it.
fn order_placed(user: &TestUser, cart_item_ids: &[&str]) -> Message {
    let payload = events::OrderPlaced {
        order_id: uuid::Uuid::now_v7().to_string(),
        user_id: user.caller.user_id.to_string(),
        cart_item_ids: cart_item_ids.iter().map(|id| (*id).to_owned()).collect(),
    };
    Message {
        id: uuid::Uuid::now_v7().to_string(),
        kind: shop_proto::message_type::<events::OrderPlaced>(),
        payload: payload.encode_to_vec(),
        headers: BTreeMap::new(),
    }
}

#[tokio::test]
async fn cart_lines_come_as_stored_without_asking_the_catalog() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let lamp = app.catalog.add("Lamp", 12_900, "KRW");
    let mug = app.catalog.add("Mug", 900, "KRW");
    let lamp_line = put(&app, &user, &lamp, 2).await.unwrap().item.unwrap().id;
    let mug_line = put(&app, &user, &mug, 1).await.unwrap().item.unwrap().id;

    let asked = app.catalog.batch_calls();
    let lines = cart_lines(&app, &user).await;
    assert_eq!(app.catalog.batch_calls(), asked, "no catalog call");
    let lines: Vec<(String, String, u32)> = lines
        .into_iter()
        .map(|line| (line.id, line.product_id, line.quantity))
        .collect();
    assert_eq!(lines, [(lamp_line, lamp, 2), (mug_line, mug, 1)]);
}

#[tokio::test]
async fn an_order_placed_takes_only_its_lines_out_of_its_customers_cart_once() {
    let app = spawn_app().await;
    let (ada, bob) = (app.new_user().await, app.new_user().await);
    let lamp = app.catalog.add("Lamp", 12_900, "KRW");
    let mug = app.catalog.add("Mug", 900, "KRW");
    let ada_lamp = put(&app, &ada, &lamp, 1).await.unwrap().item.unwrap().id;
    let ada_mug = put(&app, &ada, &mug, 1).await.unwrap().item.unwrap().id;
    let bob_lamp = put(&app, &bob, &lamp, 1).await.unwrap().item.unwrap().id;

    // Ada's order bought her lamp line. The message names Bob's line too, and a line gone
    // already: neither is Ada's to remove. It comes twice (a redelivery), after a message the
    // consumer can never apply.
    let (queue, name) = app.placed_queue();
    let gone = uuid::Uuid::now_v7().to_string();
    let placed = order_placed(&ada, &[&ada_lamp, &bob_lamp, &gone]);
    let mut poison = order_placed(&ada, &[&ada_mug]);
    poison.kind = "shop.events.v1.Mystery".to_owned();
    queue
        .publish(&name, vec![poison, placed.clone(), placed])
        .await
        .unwrap();

    let ids = |cart: pb::Cart| cart.items.into_iter().map(|item| item.id).collect::<Vec<_>>();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ids(cart(&app, &ada).await) != [ada_mug.clone()]
        || queue.message_count(&dead_letter_queue_name(&name)).await.unwrap() != Some(1)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Ada's lamp line is still there, or the poison was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        ids(cart(&app, &bob).await),
        [bob_lamp],
        "another user's cart is not touched"
    );
}
