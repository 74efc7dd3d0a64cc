//! Wishlists and carts: live product details in one catalog call, gone products as null, totals
//! in minor units, bad input refused without changes, and no access to other users' items.

use shop_proto::pb::{common::Money, user as pb};
use tonic::Code;

use crate::helpers::{TestApp, TestUser, as_caller, code, spawn_app};

async fn wishlist(app: &TestApp, user: &TestUser) -> Vec<pb::WishlistItem> {
    app.wishlist
        .clone()
        .list_wishlist(as_caller(&user.caller, pb::ListWishlistRequest {}))
        .await
        .unwrap()
        .into_inner()
        .items
}

async fn wish(
    app: &TestApp,
    user: &TestUser,
    product_id: &str,
    quantity: Option<u32>,
) -> Result<pb::AddWishlistItemResponse, tonic::Status> {
    app.wishlist
        .clone()
        .add_wishlist_item(as_caller(
            &user.caller,
            pb::AddWishlistItemRequest {
                product_id: product_id.to_owned(),
                quantity,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn cart(app: &TestApp, user: &TestUser) -> pb::Cart {
    app.cart
        .clone()
        .get_cart(as_caller(&user.caller, pb::GetCartRequest {}))
        .await
        .unwrap()
        .into_inner()
        .cart
        .unwrap()
}

pub async fn put(
    app: &TestApp,
    user: &TestUser,
    product_id: &str,
    quantity: u32,
) -> Result<pb::AddCartItemResponse, tonic::Status> {
    app.cart
        .clone()
        .add_cart_item(as_caller(
            &user.caller,
            pb::AddCartItemRequest {
                product_id: product_id.to_owned(),
                quantity,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn krw(amount: i64) -> Option<Money> {
    Some(Money {
        amount,
        currency: "KRW".to_owned(),
    })
}

#[tokio::test]
async fn the_wishlist_shows_live_products_and_gone_ones_as_null() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (lamp, desk, chair) = (
        app.catalog.add("Lamp", 12_900, "KRW"),
        app.catalog.add("Desk", 250_000, "KRW"),
        app.catalog.add("Chair", 99_000, "KRW"),
    );
    let first = wish(&app, &user, &lamp, None).await.unwrap();
    assert!(first.created);
    assert_eq!(first.item.as_ref().unwrap().quantity, 1);
    wish(&app, &user, &desk, Some(2)).await.unwrap();
    wish(&app, &user, &chair, Some(1)).await.unwrap();
    // Again: the same item, unchanged.
    let again = wish(&app, &user, &lamp, Some(7)).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.item, first.item);

    app.catalog.edit(&lamp, |product| product.price = krw(10_000));
    app.catalog.edit(&desk, |product| product.deleted = true);
    app.catalog.forget(&chair);
    let calls = app.catalog.batch_calls();
    let items = wishlist(&app, &user).await;
    assert_eq!(app.catalog.batch_calls() - calls, 1, "one batched catalog call");
    let products: Vec<_> = items.iter().map(|item| item.product_id.as_str()).collect();
    assert_eq!(products, [chair.as_str(), desk.as_str(), lamp.as_str()], "newest first");
    assert!(
        items[0].product.is_none() && items[1].product.is_none(),
        "gone products are null"
    );
    assert_eq!(items[2].product.as_ref().unwrap().price, krw(10_000), "live price");

    let updated = app
        .wishlist
        .clone()
        .update_wishlist_item(as_caller(
            &user.caller,
            pb::UpdateWishlistItemRequest {
                item_id: items[2].id.clone(),
                quantity: 3,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .item
        .unwrap();
    assert_eq!(updated.quantity, 3);
    app.wishlist
        .clone()
        .remove_wishlist_item(as_caller(
            &user.caller,
            pb::RemoveWishlistItemRequest {
                item_id: items[0].id.clone(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(wishlist(&app, &user).await.len(), 2);
}

#[tokio::test]
async fn the_cart_adds_up_in_minor_units() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    assert_eq!(cart(&app, &user).await.total, krw(0), "an empty cart totals 0 KRW");
    let (lamp, desk, poster) = (
        app.catalog.add("Lamp", 12_900, "KRW"),
        app.catalog.add("Desk", 250_000, "KRW"),
        app.catalog.add("Poster", 1_999, "USD"),
    );
    let added = put(&app, &user, &lamp, 2).await.unwrap();
    assert!(added.created);
    assert_eq!(added.item.unwrap().line_total, krw(25_800));
    let grown = put(&app, &user, &lamp, 1).await.unwrap();
    assert!(!grown.created, "the same product adds to its line");
    assert_eq!(grown.item.unwrap().quantity, 3);
    put(&app, &user, &desk, 1).await.unwrap();
    put(&app, &user, &poster, 2).await.unwrap();

    let calls = app.catalog.batch_calls();
    let view = cart(&app, &user).await;
    assert_eq!(app.catalog.batch_calls() - calls, 1, "one batched catalog call");
    assert_eq!(view.items.len(), 3);
    assert_eq!(view.items[0].product_id, lamp, "oldest first");
    assert_eq!(view.total, krw(3 * 12_900 + 250_000));
    assert_eq!(
        view.other_totals,
        [Money {
            amount: 3_998,
            currency: "USD".to_owned()
        }]
    );

    // A hidden product stays, unpriced; a deleted one shows as null.
    app.catalog.edit(&desk, |product| product.visible = false);
    app.catalog.edit(&poster, |product| product.deleted = true);
    let view = cart(&app, &user).await;
    assert!(view.items[1].product.is_some() && view.items[1].line_total.is_none());
    assert!(view.items[2].product.is_none() && view.items[2].line_total.is_none());
    assert_eq!(view.total, krw(3 * 12_900));

    let line = &view.items[0];
    let updated = app
        .cart
        .clone()
        .update_cart_item(as_caller(
            &user.caller,
            pb::UpdateCartItemRequest {
                item_id: line.id.clone(),
                quantity: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .item
        .unwrap();
    assert_eq!(updated.line_total, krw(12_900));

    let removed = app
        .cart
        .clone()
        .remove_cart_lines(as_caller(
            &user.caller,
            pb::RemoveCartLinesRequest {
                product_ids: vec![lamp.clone()],
                item_ids: vec![view.items[1].id.clone()],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 2);
    app.cart
        .clone()
        .clear_cart(as_caller(&user.caller, pb::ClearCartRequest {}))
        .await
        .unwrap();
    assert!(cart(&app, &user).await.items.is_empty());
}

#[tokio::test]
async fn bad_items_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let lamp = app.catalog.add("Lamp", 12_900, "KRW");
    let hidden = app.catalog.add("Secret", 1, "KRW");
    app.catalog.edit(&hidden, |product| product.visible = false);
    put(&app, &user, &lamp, 999).await.unwrap();
    wish(&app, &user, &lamp, None).await.unwrap();
    let (cart_before, wishlist_before) = (cart(&app, &user).await, wishlist(&app, &user).await);

    let unknown = uuid::Uuid::now_v7().to_string();
    let cases: [(&str, u32, Code, &str); 6] = [
        (&lamp, 0, Code::InvalidArgument, "invalid_argument"),
        (&lamp, 1_001, Code::InvalidArgument, "invalid_argument"),
        (&lamp, 2, Code::InvalidArgument, "invalid_argument"),
        ("not-a-uuid", 1, Code::InvalidArgument, "invalid_argument"),
        (&unknown, 1, Code::NotFound, "product_not_found"),
        (&hidden, 1, Code::NotFound, "product_not_found"),
    ];
    for (product, quantity, status, machine) in cases {
        // (lamp, 2) would take the line past 1000.
        let error = put(&app, &user, product, quantity).await.unwrap_err();
        assert_eq!(
            (error.code(), code(&error)),
            (status, machine),
            "cart {product} × {quantity}"
        );
        if quantity != 2 {
            let error = wish(&app, &user, product, Some(quantity)).await.unwrap_err();
            assert_eq!(
                (error.code(), code(&error)),
                (status, machine),
                "wishlist {product} × {quantity}"
            );
        }
    }
    for quantity in [0, 1_001] {
        let error = app
            .cart
            .clone()
            .update_cart_item(as_caller(
                &user.caller,
                pb::UpdateCartItemRequest {
                    item_id: cart_before.items[0].id.clone(),
                    quantity,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
    }
    let error = app
        .cart
        .clone()
        .remove_cart_lines(as_caller(
            &user.caller,
            pb::RemoveCartLinesRequest {
                product_ids: vec!["nope".into()],
                item_ids: vec![],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);

    assert_eq!(cart(&app, &user).await, cart_before, "the cart did not change");
    assert_eq!(
        wishlist(&app, &user).await,
        wishlist_before,
        "the wishlist did not change"
    );
}

#[tokio::test]
async fn nobody_reads_or_changes_another_users_items() {
    let app = spawn_app().await;
    let (ada, eve) = (app.new_user().await, app.new_user().await);
    let lamp = app.catalog.add("Lamp", 12_900, "KRW");
    let wished = wish(&app, &ada, &lamp, Some(2)).await.unwrap().item.unwrap();
    let line = put(&app, &ada, &lamp, 2).await.unwrap().item.unwrap();

    assert!(wishlist(&app, &eve).await.is_empty());
    assert!(cart(&app, &eve).await.items.is_empty());

    let mut wishlist_client = app.wishlist.clone();
    let error = wishlist_client
        .update_wishlist_item(as_caller(
            &eve.caller,
            pb::UpdateWishlistItemRequest {
                item_id: wished.id.clone(),
                quantity: 9,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = wishlist_client
        .remove_wishlist_item(as_caller(
            &eve.caller,
            pb::RemoveWishlistItemRequest {
                item_id: wished.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    let mut cart_client = app.cart.clone();
    let error = cart_client
        .update_cart_item(as_caller(
            &eve.caller,
            pb::UpdateCartItemRequest {
                item_id: line.id.clone(),
                quantity: 9,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = cart_client
        .remove_cart_item(as_caller(
            &eve.caller,
            pb::RemoveCartItemRequest {
                item_id: line.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let removed = cart_client
        .remove_cart_lines(as_caller(
            &eve.caller,
            pb::RemoveCartLinesRequest {
                product_ids: vec![lamp.clone()],
                item_ids: vec![line.id.clone()],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 0);
    cart_client
        .clear_cart(as_caller(&eve.caller, pb::ClearCartRequest {}))
        .await
        .unwrap();

    // Ada's items are untouched.
    let items = wishlist(&app, &ada).await;
    assert_eq!((items.len(), items[0].quantity), (1, 2));
    let view = cart(&app, &ada).await;
    assert_eq!((view.items.len(), view.items[0].quantity), (1, 2));

    // Anonymous calls are refused outright.
    let error = app.cart.clone().get_cart(pb::GetCartRequest {}).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn prices_too_large_to_add_up_are_refused_and_save_no_line() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let lamp = app.catalog.add("Lamp", 12_900, "KRW");
    put(&app, &user, &lamp, 2).await.unwrap();
    let before = cart(&app, &user).await;

    for amount in [1_i64 << 62, i64::MAX] {
        let huge = app.catalog.add("Gold", amount, "KRW");
        let error = put(&app, &user, &huge, 2).await.unwrap_err();
        assert_eq!(
            (error.code(), code(&error)),
            (Code::FailedPrecondition, "cart_total_too_large"),
            "{amount}"
        );
        assert_eq!(cart(&app, &user).await, before, "no line was saved for {amount}");
    }

    // A product already in the cart whose price became too large (written before prices were
    // bounded): the cart answers a clear refusal, and changing its quantity writes nothing.
    app.catalog.edit(&lamp, |product| product.price = krw(i64::MAX));
    let error = app
        .cart
        .clone()
        .get_cart(as_caller(&user.caller, pb::GetCartRequest {}))
        .await
        .unwrap_err();
    assert_eq!(
        (error.code(), code(&error)),
        (Code::FailedPrecondition, "cart_total_too_large")
    );
    let error = app
        .cart
        .clone()
        .update_cart_item(as_caller(
            &user.caller,
            pb::UpdateCartItemRequest {
                item_id: before.items[0].id.clone(),
                quantity: 3,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    app.catalog.edit(&lamp, |product| product.price = krw(12_900));
    assert_eq!(cart(&app, &user).await, before, "the quantity did not change");
}
