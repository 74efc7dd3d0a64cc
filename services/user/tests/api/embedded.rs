//! The one-process run's backends (SQLite and the in-process cache) serve the same journeys:
//! the migrations, conditional updates, keyset pages and cascades work there too.

use shop_proto::pb::user as pb;
use tonic::Code;

use crate::helpers::{as_caller, code, spawn_embedded_app};

#[tokio::test]
async fn accounts_sessions_and_carts_work_on_sqlite() {
    let (admin_email, admin_password) = ("root@shop.example.com", "b00tstrap-Admin");
    let app = spawn_embedded_app(&[
        ("SHOP_ADMIN_EMAIL", admin_email),
        ("SHOP_ADMIN_PASSWORD", admin_password),
    ])
    .await;
    let (ada, bob) = (app.new_user().await, app.new_user().await);

    // Keyset pages, newest first.
    let tokens = app.login(admin_email, admin_password).await.unwrap();
    let admin = app
        .user_with(admin_email.to_owned(), admin_password.to_owned(), tokens)
        .await;
    let seen = app.all_user_emails(&admin.caller, 1).await;
    assert_eq!(seen, [bob.email.as_str(), ada.email.as_str(), admin_email]);

    // Rotation and reuse detection.
    let mut users = app.users.clone();
    let refresh = |token: &str| pb::RefreshSessionRequest {
        refresh_token: token.to_owned(),
    };
    let next = users
        .refresh_session(refresh(&ada.tokens.refresh_token))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let error = users
        .refresh_session(refresh(&ada.tokens.refresh_token))
        .await
        .unwrap_err();
    assert_eq!(code(&error), "invalid_refresh_token");
    assert!(users.refresh_session(refresh(&next.refresh_token)).await.is_err());
    assert!(app.is_revoked(&ada).await);

    // A cart line grows in place, and belongs to its owner only.
    let lamp = app.catalog.add("Lamp", 12_900, "KRW");
    let mut cart = app.cart.clone();
    for _ in 0..2 {
        cart.add_cart_item(as_caller(
            &bob.caller,
            pb::AddCartItemRequest {
                product_id: lamp.clone(),
                quantity: 2,
            },
        ))
        .await
        .unwrap();
    }
    let view = cart
        .get_cart(as_caller(&bob.caller, pb::GetCartRequest {}))
        .await
        .unwrap()
        .into_inner()
        .cart
        .unwrap();
    assert_eq!(view.items[0].quantity, 4);
    assert_eq!(view.total.unwrap().amount, 4 * 12_900);
    let error = cart
        .remove_cart_item(as_caller(
            &ada.caller,
            pb::RemoveCartItemRequest {
                item_id: view.items[0].id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    // Deleting the account cascades to its cart.
    users
        .delete_account(as_caller(
            &bob.caller,
            pb::DeleteAccountRequest {
                password: bob.password.clone(),
            },
        ))
        .await
        .unwrap();
    let view = cart
        .get_cart(as_caller(&bob.caller, pb::GetCartRequest {}))
        .await
        .unwrap()
        .into_inner()
        .cart
        .unwrap();
    assert!(view.items.is_empty());
}
