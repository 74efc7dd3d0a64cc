//! One service down does not take the shop down: with the catalog process killed, browsing is
//! 503 problem+json with `Retry-After` (never 500), while signed-in customers still read their
//! orders and profile, and the gateway stays ready, naming what is down.

use reqwest::Method;
use serde_json::json;

use crate::{
    journey::{create_product, log_in, place_order},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack},
};

#[tokio::test]
async fn with_the_catalog_down_browsing_is_503_and_the_rest_still_works() {
    let mut stack = Stack::services(&[]).await;
    let api = stack.api.clone();
    let admin = log_in(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let product = create_product(&api, &admin, "Desk lamp", "Warm light", 12_900, 5).await;
    let order = place_order(
        &api,
        &admin,
        "outage-1",
        &json!({ "items": [{ "product_id": product, "quantity": 1 }] }),
    )
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();

    stack.kill("shop-catalog");

    for path in ["/products".to_owned(), format!("/products/{product}")] {
        let reply = api.get(&path).send().await;
        reply.problem(503, "unavailable");
        let retry_after: u64 = reply
            .header("retry-after")
            .unwrap_or_else(|| panic!("GET {path}: no Retry-After"))
            .parse()
            .unwrap();
        assert!(retry_after >= 1, "GET {path}: Retry-After {retry_after}");
    }
    // What does not need the catalog still works.
    let mine = api
        .get(&format!("/orders/{order_id}"))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    assert_eq!(mine["id"], order_id.as_str());
    let orders = api.get("/orders").token(&admin.access).send().await.expect(200);
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
    let me = api.get("/users/me").token(&admin.access).send().await.expect(200);
    assert_eq!(me["email"], ADMIN_EMAIL);

    let ready = api.at(Method::GET, "/readyz").send().await.expect(200);
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["catalog"], "unreachable", "{ready}");
    for up in ["user", "order"] {
        assert_eq!(ready["checks"][up], "serving", "{ready}");
    }
    assert_eq!(ready["checks"]["cache"], "up", "{ready}");
}
