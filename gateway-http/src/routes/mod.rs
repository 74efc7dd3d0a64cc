//! The `/api/v1` routes of the public REST contract, one module per resource group. Handlers
//! only translate JSON ⇄ protobuf and call a service; the rules live in the services, and
//! their errors come back through the one gRPC → HTTP table of [`crate::problem`].

pub mod accounts;
mod call;
pub mod cart;
pub mod orders;
pub mod products;
pub mod users;
pub mod wishlist;

use axum::Router;
use shop_platform::grpc::client::GrpcChannel;
use shop_proto::pb::{
    catalog::catalog_service_client::CatalogServiceClient,
    order::order_service_client::OrderServiceClient,
    user::{
        cart_service_client::CartServiceClient, user_service_client::UserServiceClient,
        wishlist_service_client::WishlistServiceClient,
    },
};

pub use call::Call;

use crate::AppState;

/// Every `/api/v1` route.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(accounts::routes())
        .merge(users::routes())
        .merge(products::routes())
        .merge(wishlist::routes())
        .merge(cart::routes())
        .merge(orders::routes())
}

/// Clients of the services, over the shared balanced channels (cheap to make per call).
impl AppState {
    fn users(&self) -> UserServiceClient<GrpcChannel> {
        UserServiceClient::new(self.upstreams.user.clone())
    }

    fn wishlists(&self) -> WishlistServiceClient<GrpcChannel> {
        WishlistServiceClient::new(self.upstreams.user.clone())
    }

    fn carts(&self) -> CartServiceClient<GrpcChannel> {
        CartServiceClient::new(self.upstreams.user.clone())
    }

    fn catalog(&self) -> CatalogServiceClient<GrpcChannel> {
        CatalogServiceClient::new(self.upstreams.catalog.clone())
    }

    fn orders(&self) -> OrderServiceClient<GrpcChannel> {
        OrderServiceClient::new(self.upstreams.order.clone())
    }
}
