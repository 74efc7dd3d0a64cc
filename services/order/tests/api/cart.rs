//! The real user service beside the order service, for orders from the cart: customer accounts
//! in its database, carts through its CartService (called as the gateway calls it, for the
//! customer), and stopping and starting it as an outage would.

use std::time::Duration;

use sea_orm::{ActiveModelTrait as _, ActiveValue::Set};
use shop_platform::{
    grpc::identity::{Caller, Role},
    testing::service::{TestService, TestSetup},
};
use shop_proto::pb::{
    order::{self, PlaceOrderRequest, place_order_request::Source},
    user::{AddCartItemRequest, CartItem, GetCartRequest, cart_service_client::CartServiceClient},
};
use shop_user::{UserService, entity::user};
use tonic::Status;
use uuid::Uuid;

use crate::helpers::{PATIENCE, TestMesh, caller, signed};

/// Starts the user service beside `catalog` (its database, broker and queue names), pricing
/// carts through it.
pub async fn start_users<S: shop_platform::service::MeshService>(catalog: &TestService<S>) -> TestService<UserService> {
    TestSetup::new(UserService::db)
        .alongside(catalog)
        .env("SHOP_CATALOG_TARGET", format!("http://{}", catalog.addr))
        .start()
        .await
}

impl TestMesh {
    /// The running user service (the mesh was spawned with `users`).
    fn users(&self) -> &TestService<UserService> {
        self.users.as_ref().expect("the mesh runs the user service")
    }

    /// A customer with an account in the user service (written to its database: how the
    /// account came to be is not what these tests are about).
    pub async fn customer(&self) -> Caller {
        let customer = caller(Role::Customer);
        let now = chrono::Utc::now();
        user::ActiveModel {
            id: Set(customer.user_id),
            email: Set(format!("{}@example.com", customer.user_id.simple())),
            password_hash: Set(String::new()),
            name: Set("Ada Lovelace".into()),
            phone: Set("+82 10 1234 5678".into()),
            address: Set("1 Analytical Engine Street, Seoul".into()),
            role: Set("customer".into()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.users().db)
        .await
        .unwrap();
        customer
    }

    /// Puts `quantity` of `product` in `customer`'s cart; returns the line's id.
    pub async fn add_to_cart(&self, customer: &Caller, product: Uuid, quantity: u32) -> String {
        let request = AddCartItemRequest {
            product_id: product.to_string(),
            quantity,
        };
        self.carts()
            .await
            .add_cart_item(signed(request, customer))
            .await
            .unwrap()
            .into_inner()
            .item
            .unwrap()
            .id
    }

    /// `customer`'s cart lines, as GetCart answers them.
    pub async fn cart(&self, customer: &Caller) -> Vec<CartItem> {
        self.carts()
            .await
            .get_cart(signed(GetCartRequest {}, customer))
            .await
            .unwrap()
            .into_inner()
            .cart
            .unwrap()
            .items
    }

    /// Polls `customer`'s cart until `done` says so (for at most [`PATIENCE`]); returns its lines.
    pub async fn wait_for_cart(&self, customer: &Caller, done: impl Fn(&[CartItem]) -> bool) -> Vec<CartItem> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let lines = self.cart(customer).await;
            if done(&lines) {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cart is still {lines:#?} after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Places an order from `customer`'s cart under `key` on the first order service instance.
    pub async fn place_from_cart(&self, customer: &Caller, key: &str) -> Result<order::Order, Status> {
        let request = PlaceOrderRequest {
            idempotency_key: key.into(),
            source: Some(Source::FromCart(true)),
        };
        Ok(self
            .client()
            .place_order(signed(request, customer))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    /// Stops the user service, as an outage would.
    pub async fn stop_users(&mut self) {
        self.users.take().expect("the user service runs").stop().await;
    }

    /// Starts the user service again, on the same database and queues.
    pub async fn restart_users(&mut self) {
        self.users = Some(start_users(&self.catalog).await);
    }

    async fn carts(&self) -> CartServiceClient<shop_platform::grpc::client::GrpcChannel> {
        CartServiceClient::new(self.users().channel().await)
    }
}

/// The ids of `lines`.
pub fn ids(lines: &[CartItem]) -> Vec<&str> {
    lines.iter().map(|line| line.id.as_str()).collect()
}
