//! The caller's cart.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, patch, post},
};
use shop_proto::pb::user as pb;
use uuid::Uuid;

use super::Call;
use crate::{
    AppState,
    auth::AuthUser,
    dto::{
        lists::{AddCartItemRequest, Cart, CartItem, QuantityRequest, cart_item},
        required,
    },
    extract::{ApiJson, ApiPath},
    problem::ApiError,
    problem::{Always, BadInput, BodyErrors, NotFound, Unauthenticated},
};

/// The cart routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cart", get(get_cart).delete(clear_cart))
        .route("/cart/items", post(add_cart_item))
        .route(
            "/cart/items/{item_id}",
            patch(update_cart_item).delete(remove_cart_item),
        )
}

/// The caller's cart, with each product's live data and the totals at current prices.
#[utoipa::path(
    get,
    path = "/cart",
    tag = "cart",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart.", body = Cart),
        Unauthenticated,
        Always,
    )
)]
pub async fn get_cart(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
) -> Result<Json<Cart>, ApiError> {
    let reply = state
        .carts()
        .get_cart(call.for_caller(&caller, pb::GetCartRequest {}))
        .await?;
    Ok(Json(Cart::try_from(required(reply.into_inner().cart, "cart")?)?))
}

/// Puts a product in the cart; the same product again adds to its line's quantity.
#[utoipa::path(
    post,
    path = "/cart/items",
    tag = "cart",
    request_body = AddCartItemRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The product's line after the addition.", body = CartItem),
        BodyErrors,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn add_cart_item(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiJson(body): ApiJson<AddCartItemRequest>,
) -> Result<(StatusCode, Json<CartItem>), ApiError> {
    let reply = state
        .carts()
        .add_cart_item(call.for_caller(&caller, body.into()))
        .await?;
    // 201 whether the line is new or grew: the contract has one answer for both.
    Ok((StatusCode::CREATED, Json(cart_item(reply.into_inner().item)?)))
}

/// Sets the quantity of a line (at least 1; remove the line instead of setting 0).
#[utoipa::path(
    patch,
    path = "/cart/items/{item_id}",
    tag = "cart",
    params(("item_id" = Uuid, Path, description = "The line's id.")),
    request_body = QuantityRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The line after the change.", body = CartItem),
        BodyErrors,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn update_cart_item(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(item_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<QuantityRequest>,
) -> Result<Json<CartItem>, ApiError> {
    let message = pb::UpdateCartItemRequest {
        item_id: item_id.to_string(),
        quantity: body.quantity.get(),
    };
    let reply = state
        .carts()
        .update_cart_item(call.for_caller(&caller, message))
        .await?;
    Ok(Json(cart_item(reply.into_inner().item)?))
}

/// Removes a line from the cart.
#[utoipa::path(
    delete,
    path = "/cart/items/{item_id}",
    tag = "cart",
    params(("item_id" = Uuid, Path, description = "The line's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The line is removed."),
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn remove_cart_item(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(item_id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let message = pb::RemoveCartItemRequest {
        item_id: item_id.to_string(),
    };
    state
        .carts()
        .remove_cart_item(call.for_caller(&caller, message))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Empties the cart.
#[utoipa::path(
    delete,
    path = "/cart",
    tag = "cart",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The cart is empty."),
        Unauthenticated,
        Always,
    )
)]
pub async fn clear_cart(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
) -> Result<StatusCode, ApiError> {
    state
        .carts()
        .clear_cart(call.for_caller(&caller, pb::ClearCartRequest {}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
