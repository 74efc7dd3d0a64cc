//! Orders: placing (idempotent by `Idempotency-Key`), reading, cancelling, returning items.
//! Callers see their own orders; admins see every order.

use axum::{
    Json, Router,
    extract::{FromRequestParts, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use shop_proto::pb::order as pb;
use uuid::Uuid;

use super::Call;
use crate::{
    AppState,
    auth::AuthUser,
    dto::{
        next_cursor,
        orders::{Order, OrderList, OrderQuery, PlaceOrderRequest, order},
        page,
    },
    extract::{ApiJson, ApiPath, ApiQuery},
    problem::{Always, BadInput, BodyErrors, NotFound, Unauthenticated},
    problem::{ApiError, Problem},
};

/// The order routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", get(list_orders).post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/items/{item_id}/return", post(return_order_item))
}

/// The `Idempotency-Key` header, required to place an order (400 when missing or not text).
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or_else(|| ApiError::bad_request("missing_idempotency_key", "send an Idempotency-Key header"))?;
        match value.to_str() {
            Ok(key) if !key.trim().is_empty() => Ok(Self(key.to_owned())),
            _ => Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "the Idempotency-Key must be 1 to 255 printable ASCII characters",
            )),
        }
    }
}

/// Places an order from explicit lines or from the caller's cart.
///
/// The order comes back `pending` (stock not reserved yet): poll it until it is `paid` or
/// `rejected`. The same key and body again return the same order. From the cart, the lines
/// bought leave the cart shortly after this answer, not within it (poll `GET /cart`); lines
/// added afterwards stay.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    params((
        "Idempotency-Key" = String,
        Header,
        description = "The client's key for this placement, unique per caller: 1 to 255 printable ASCII characters, not only spaces.",
        max_length = 255,
        pattern = r"^[\x20-\x7E]*[\x21-\x7E][\x20-\x7E]*$"
    )),
    request_body = PlaceOrderRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The order, `pending` when new.", body = Order,
            headers(("Location" = String, description = "The order's URL."))),
        (status = 409, description = "`cart_empty`, `cart_total_too_large`, `product_unavailable`, \
            `mixed_currency`, `idempotency_key_reused` or `idempotency_key_in_use`.",
            body = Problem, content_type = "application/problem+json"),
        BodyErrors,
        Unauthenticated,
        Always,
    )
)]
pub async fn place_order(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let message = body.into_proto(key)?;
    let reply = state.orders().place_order(call.for_caller(&caller, message)).await?;
    let order = order(reply.into_inner().order)?;
    let mut response = (StatusCode::ACCEPTED, Json(&order)).into_response();
    if let Ok(location) = HeaderValue::try_from(format!("/api/v1/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The caller's orders, newest first (admins: every user's, or one user's with `user_id`).
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(OrderQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders.", body = OrderList),
        BadInput,
        Unauthenticated,
        (status = 403, description = "A non-admin named another user.",
            body = Problem, content_type = "application/problem+json"),
        Always,
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiQuery(query): ApiQuery<OrderQuery>,
) -> Result<Json<OrderList>, ApiError> {
    let message = pb::ListOrdersRequest {
        page: Some(page(query.limit, query.cursor.as_deref())?),
        user_id: query.user_id.map(|id| id.to_string()).unwrap_or_default(),
    };
    let reply = state
        .orders()
        .list_orders(call.for_caller(&caller, message))
        .await?
        .into_inner();
    Ok(Json(OrderList {
        items: reply
            .orders
            .into_iter()
            .map(Order::try_from)
            .collect::<Result<_, _>>()?,
        next_cursor: next_cursor(reply.page),
    }))
}

/// One order.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order.", body = Order),
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Order>, ApiError> {
    let message = pb::GetOrderRequest { id: id.to_string() };
    let reply = state.orders().get_order(call.for_caller(&caller, message)).await?;
    Ok(Json(order(reply.into_inner().order)?))
}

/// Cancels an order.
///
/// Allowed before it ships and within the cancel window; a captured payment is refunded and the
/// stock given back.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order, `cancelled`.", body = Order),
        (status = 409, description = "`not_cancellable`: shipped, ended, or past the cancel window.",
            body = Problem, content_type = "application/problem+json"),
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Order>, ApiError> {
    let message = pb::CancelOrderRequest { id: id.to_string() };
    let reply = state.orders().cancel_order(call.for_caller(&caller, message)).await?;
    Ok(Json(order(reply.into_inner().order)?))
}

/// Returns one item of a delivered order.
///
/// Allowed within the return window; the item is refunded and its stock given back.
#[utoipa::path(
    post,
    path = "/orders/{id}/items/{item_id}/return",
    tag = "orders",
    params(
        ("id" = Uuid, Path, description = "The order's id."),
        ("item_id" = Uuid, Path, description = "The item's id."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order, with the item `returned`.", body = Order),
        (status = 409, description = "`not_returnable`: not delivered, or past the return window.",
            body = Problem, content_type = "application/problem+json"),
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn return_order_item(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath((id, item_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Order>, ApiError> {
    let message = pb::ReturnOrderItemRequest {
        order_id: id.to_string(),
        item_id: item_id.to_string(),
    };
    let reply = state
        .orders()
        .return_order_item(call.for_caller(&caller, message))
        .await?;
    Ok(Json(order(reply.into_inner().order)?))
}
