//! The caller's wishlist.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, patch},
};
use shop_proto::pb::user as pb;
use uuid::Uuid;

use super::Call;
use crate::{
    AppState,
    auth::AuthUser,
    dto::lists::{AddWishlistItemRequest, QuantityRequest, Wishlist, WishlistItem, wishlist_item},
    extract::{ApiJson, ApiPath},
    problem::ApiError,
    problem::{Always, BadInput, BodyErrors, NotFound, Unauthenticated},
};

/// The wishlist routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wishlist", get(list_wishlist).post(add_wishlist_item))
        .route(
            "/wishlist/{item_id}",
            patch(update_wishlist_item).delete(remove_wishlist_item),
        )
}

/// The caller's wishlist, newest item first, with each product's live data.
#[utoipa::path(
    get,
    path = "/wishlist",
    tag = "wishlist",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The wishlist.", body = Wishlist),
        Unauthenticated,
        Always,
    )
)]
pub async fn list_wishlist(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
) -> Result<Json<Wishlist>, ApiError> {
    let reply = state
        .wishlists()
        .list_wishlist(call.for_caller(&caller, pb::ListWishlistRequest {}))
        .await?;
    Ok(Json(Wishlist {
        items: reply
            .into_inner()
            .items
            .into_iter()
            .map(WishlistItem::try_from)
            .collect::<Result<_, _>>()?,
        next_cursor: None,
    }))
}

/// Adds a product to the wishlist; adding a product already listed changes nothing.
#[utoipa::path(
    post,
    path = "/wishlist",
    tag = "wishlist",
    request_body = AddWishlistItemRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new item.", body = WishlistItem),
        (status = 200, description = "The product was already listed: the existing item.", body = WishlistItem),
        BodyErrors,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn add_wishlist_item(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiJson(body): ApiJson<AddWishlistItemRequest>,
) -> Result<(StatusCode, Json<WishlistItem>), ApiError> {
    let reply = state
        .wishlists()
        .add_wishlist_item(call.for_caller(&caller, body.into()))
        .await?
        .into_inner();
    let status = if reply.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(wishlist_item(reply.item)?)))
}

/// Sets the wished quantity of an item.
#[utoipa::path(
    patch,
    path = "/wishlist/{item_id}",
    tag = "wishlist",
    params(("item_id" = Uuid, Path, description = "The item's id.")),
    request_body = QuantityRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The item after the change.", body = WishlistItem),
        BodyErrors,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn update_wishlist_item(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(item_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<QuantityRequest>,
) -> Result<Json<WishlistItem>, ApiError> {
    let message = pb::UpdateWishlistItemRequest {
        item_id: item_id.to_string(),
        quantity: body.quantity.get(),
    };
    let reply = state
        .wishlists()
        .update_wishlist_item(call.for_caller(&caller, message))
        .await?;
    Ok(Json(wishlist_item(reply.into_inner().item)?))
}

/// Removes an item from the wishlist.
#[utoipa::path(
    delete,
    path = "/wishlist/{item_id}",
    tag = "wishlist",
    params(("item_id" = Uuid, Path, description = "The item's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The item is removed."),
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn remove_wishlist_item(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(item_id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let message = pb::RemoveWishlistItemRequest {
        item_id: item_id.to_string(),
    };
    state
        .wishlists()
        .remove_wishlist_item(call.for_caller(&caller, message))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
