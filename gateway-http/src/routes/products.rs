//! The catalog: products and their stock. Reads are public (hidden products only for their
//! seller and admins); writes belong to sellers and admins.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use shop_proto::pb::catalog as pb;
use uuid::Uuid;

use super::Call;
use crate::{
    AppState,
    auth::{AuthUser, MaybeAuthUser},
    dto::{
        catalog::{
            CreateProductRequest, Product, ProductList, ProductQuery, SetStockRequest, Stock, UpdateProductRequest,
            product,
        },
        next_cursor, page,
    },
    extract::{ApiJson, ApiPath, ApiQuery},
    problem::ApiError,
    problem::{Always, BadInput, BodyErrors, Forbidden, NotFound, Unauthenticated},
};

/// The product routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/products", get(list_products).post(create_product))
        .route(
            "/products/{id}",
            get(get_product).patch(update_product).delete(delete_product),
        )
        .route("/products/{id}/stock", get(get_stock).put(set_stock))
}

/// Lists the visible products, newest first, with filters.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(ProductQuery),
    responses(
        (status = 200, description = "A page of products.", body = ProductList),
        BadInput,
        Always,
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_products(
    State(state): State<AppState>,
    call: Call,
    ApiQuery(query): ApiQuery<ProductQuery>,
) -> Result<Json<ProductList>, ApiError> {
    let message = pb::ListProductsRequest {
        page: Some(page(query.limit, query.cursor.as_deref())?),
        query: query.q.unwrap_or_default(),
        min_price: query.min_price,
        max_price: query.max_price,
        in_stock: query.in_stock.unwrap_or(false),
        seller_id: query.seller_id.map(|id| id.to_string()).unwrap_or_default(),
    };
    let reply = state
        .catalog()
        .list_products(call.anonymous(message))
        .await?
        .into_inner();
    Ok(Json(ProductList {
        items: reply
            .products
            .into_iter()
            .map(Product::try_from)
            .collect::<Result<_, _>>()?,
        next_cursor: next_cursor(reply.page),
    }))
}

/// One product.
///
/// Hidden products are found only by their seller and admins.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path, description = "The product's id.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The product.", body = Product),
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn get_product(
    State(state): State<AppState>,
    call: Call,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Product>, ApiError> {
    let message = pb::GetProductRequest { id: id.to_string() };
    let reply = state
        .catalog()
        .get_product(call.for_maybe(caller.as_ref(), message))
        .await?;
    Ok(Json(product(reply.into_inner().product)?))
}

/// Creates a product owned by the caller (sellers and admins).
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    request_body = CreateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new product.", body = Product,
            headers(("Location" = String, description = "The product's URL."))),
        BodyErrors,
        Unauthenticated,
        Forbidden,
        Always,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
pub async fn create_product(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiJson(body): ApiJson<CreateProductRequest>,
) -> Result<Response, ApiError> {
    let reply = state
        .catalog()
        .create_product(call.for_caller(&caller, body.into()))
        .await?;
    let product = product(reply.into_inner().product)?;
    let mut response = (StatusCode::CREATED, Json(&product)).into_response();
    if let Ok(location) = HeaderValue::try_from(format!("/api/v1/products/{}", product.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Changes some of a product's fields (its seller and admins); absent fields keep their value.
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path, description = "The product's id.")),
    request_body = UpdateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product after the change.", body = Product),
        BodyErrors,
        Unauthenticated,
        Forbidden,
        NotFound,
        Always,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id, product_id = %id))]
pub async fn update_product(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateProductRequest>,
) -> Result<Json<Product>, ApiError> {
    let reply = state
        .catalog()
        .update_product(call.for_caller(&caller, body.into_proto(id)))
        .await?;
    Ok(Json(product(reply.into_inner().product)?))
}

/// Deletes a product (its seller and admins).
///
/// It leaves every list; past orders keep their snapshot.
#[utoipa::path(
    delete,
    path = "/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path, description = "The product's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The product is deleted."),
        BadInput,
        Unauthenticated,
        Forbidden,
        NotFound,
        Always,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id, product_id = %id))]
pub async fn delete_product(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let message = pb::DeleteProductRequest { id: id.to_string() };
    state
        .catalog()
        .delete_product(call.for_caller(&caller, message))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a product's available stock (its seller and admins).
#[utoipa::path(
    put,
    path = "/products/{id}/stock",
    tag = "products",
    params(("id" = Uuid, Path, description = "The product's id.")),
    request_body = SetStockRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stock after the change.", body = Stock),
        BodyErrors,
        Unauthenticated,
        Forbidden,
        NotFound,
        Always,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id, product_id = %id))]
pub async fn set_stock(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SetStockRequest>,
) -> Result<Json<Stock>, ApiError> {
    let message = pb::SetStockRequest {
        product_id: id.to_string(),
        stock: body.stock,
    };
    let reply = state
        .catalog()
        .set_stock(call.for_caller(&caller, message))
        .await?
        .into_inner();
    Ok(Json(Stock::new(&reply.product_id, reply.stock)?))
}

/// A product's available stock (visibility as for the product).
#[utoipa::path(
    get,
    path = "/products/{id}/stock",
    tag = "products",
    params(("id" = Uuid, Path, description = "The product's id.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The stock.", body = Stock),
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn get_stock(
    State(state): State<AppState>,
    call: Call,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Stock>, ApiError> {
    let message = pb::GetStockRequest {
        product_id: id.to_string(),
    };
    let reply = state
        .catalog()
        .get_stock(call.for_maybe(caller.as_ref(), message))
        .await?
        .into_inner();
    Ok(Json(Stock::new(&reply.product_id, reply.stock)?))
}
