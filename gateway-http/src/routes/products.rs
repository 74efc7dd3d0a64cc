//! The catalog: products and their stock. Reads are public (hidden products only for their
//! seller and admins); writes belong to sellers and admins.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use shop_platform::grpc::identity::Caller;
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
    read_cache::{NotModified, ReadKey, Uncached, json_body, private},
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
///
/// Answered from the gateway's cache for up to `SHOP_EDGE_CACHE_TTL` (1 s by default): a page
/// may be that old, except after a write through the same gateway.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(ProductQuery, ("If-None-Match" = Option<String>, Header, description = "ETags of copies the client holds: 304 when one is current.")),
    responses(
        (status = 200, description = "A page of products.", body = ProductList,
            headers(
                ("ETag" = String, description = "Strong validator of this body; send it back in `If-None-Match`."),
                ("Cache-Control" = String, description = "`public, max-age=<edge cache TTL in seconds>` for what anyone may see; `private, no-store` for a hidden product shown to its seller or an admin."),
                ("Age" = u64, description = "Seconds since the gateway fetched this answer, when it came from its cache."),
            )),
        NotModified,
        BadInput,
        Always,
    )
)]
pub async fn list_products(
    State(state): State<AppState>,
    call: Call,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ProductQuery>,
) -> Result<Response, ApiError> {
    // The parsed parameters in one order: `?limit=20&q=a` and `?q=a&limit=20` are one entry.
    let key = ReadKey::List(format!(
        "{:?}",
        (
            &query.q,
            query.min_price,
            query.max_price,
            query.in_stock.unwrap_or(false),
            query.seller_id,
            query.limit,
            &query.cursor
        )
    ));
    // The catalog lists only visible products to anyone (a seller's hidden ones appear only in
    // their own views, which are not this call); checked, not assumed.
    let fetch = |_: Option<&Caller>| fetch_list(&state, &call, &query);
    let public = |list: &ProductList| list.items.iter().all(|product| product.visible);
    cached_read(&state, key, &headers, None, fetch, public).await
}

/// A catalog read through the edge read cache: `fetch` asks the catalog for the caller given
/// (`None`: anonymously). The anonymous answer, when `public` says anyone may see it, is
/// cached; when the product is not found for anyone and the caller is signed in (perhaps its
/// seller or an admin), or the answer is not public, it is asked again for the caller and
/// answered to them alone.
async fn cached_read<T, F, Fut>(
    state: &AppState,
    key: ReadKey,
    headers: &HeaderMap,
    caller: Option<Caller>,
    fetch: F,
    public: impl Fn(&T) -> bool,
) -> Result<Response, ApiError>
where
    T: Serialize,
    F: Fn(Option<&Caller>) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let served = state
        .reads
        .get_or_fetch(key, || async {
            let value = fetch(None).await?;
            if !public(&value) {
                return Err(Uncached::NotPublic);
            }
            Ok(json_body(&value)?)
        })
        .await;
    match (served, caller) {
        (Ok(served), _) => Ok(served.respond(headers)),
        (Err(Uncached::Failed(error)), Some(caller)) if error.status == StatusCode::NOT_FOUND => {
            private(&fetch(Some(&caller)).await?, headers)
        }
        (Err(Uncached::Failed(error)), _) => Err(error),
        (Err(Uncached::NotPublic), caller) => private(&fetch(caller.as_ref()).await?, headers),
    }
}

/// A page of products, fetched.
async fn fetch_list(state: &AppState, call: &Call, query: &ProductQuery) -> Result<ProductList, ApiError> {
    let message = pb::ListProductsRequest {
        page: Some(page(query.limit, query.cursor.as_deref())?),
        query: query.q.clone().unwrap_or_default(),
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
    Ok(ProductList {
        items: reply
            .products
            .into_iter()
            .map(Product::try_from)
            .collect::<Result<_, _>>()?,
        next_cursor: next_cursor(reply.page),
    })
}

/// One product.
///
/// Hidden products are found only by their seller and admins. A visible product's answer may be
/// up to `SHOP_EDGE_CACHE_TTL` old (1 s by default), except after a write through the same
/// gateway.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = Uuid, Path, description = "The product's id."), ("If-None-Match" = Option<String>, Header, description = "ETags of copies the client holds: 304 when one is current.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The product.", body = Product,
            headers(
                ("ETag" = String, description = "Strong validator of this body; send it back in `If-None-Match`."),
                ("Cache-Control" = String, description = "`public, max-age=<edge cache TTL in seconds>` for what anyone may see; `private, no-store` for a hidden product shown to its seller or an admin."),
                ("Age" = u64, description = "Seconds since the gateway fetched this answer, when it came from its cache."),
            )),
        NotModified,
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn get_product(
    State(state): State<AppState>,
    call: Call,
    headers: HeaderMap,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let fetch = |caller: Option<&Caller>| {
        let request = call.for_maybe(caller, pb::GetProductRequest { id: id.to_string() });
        let mut catalog = state.catalog();
        async move { Ok::<_, ApiError>(product(catalog.get_product(request).await?.into_inner().product)?) }
    };
    cached_read(
        &state,
        ReadKey::Product(id),
        &headers,
        caller,
        fetch,
        |product: &Product| product.visible,
    )
    .await
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
pub async fn create_product(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiJson(body): ApiJson<CreateProductRequest>,
) -> Result<Response, ApiError> {
    let reply = state
        .catalog()
        .create_product(call.for_caller(&caller, body.into()))
        .await;
    state.reads.written(None);
    let product = product(reply?.into_inner().product)?;
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
        .await;
    state.reads.written(Some(id));
    Ok(Json(product(reply?.into_inner().product)?))
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
pub async fn delete_product(
    State(state): State<AppState>,
    call: Call,
    AuthUser(caller): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let message = pb::DeleteProductRequest { id: id.to_string() };
    let reply = state.catalog().delete_product(call.for_caller(&caller, message)).await;
    state.reads.written(Some(id));
    reply?;
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
    let reply = state.catalog().set_stock(call.for_caller(&caller, message)).await;
    state.reads.written(Some(id));
    let reply = reply?.into_inner();
    Ok(Json(Stock::new(&reply.product_id, reply.stock)?))
}

/// A product's available stock (visibility and freshness as for the product).
#[utoipa::path(
    get,
    path = "/products/{id}/stock",
    tag = "products",
    params(("id" = Uuid, Path, description = "The product's id."), ("If-None-Match" = Option<String>, Header, description = "ETags of copies the client holds: 304 when one is current.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The stock.", body = Stock,
            headers(
                ("ETag" = String, description = "Strong validator of this body; send it back in `If-None-Match`."),
                ("Cache-Control" = String, description = "`public, max-age=<edge cache TTL in seconds>` for what anyone may see; `private, no-store` for a hidden product shown to its seller or an admin."),
                ("Age" = u64, description = "Seconds since the gateway fetched this answer, when it came from its cache."),
            )),
        NotModified,
        BadInput,
        Unauthenticated,
        NotFound,
        Always,
    )
)]
pub async fn get_stock(
    State(state): State<AppState>,
    call: Call,
    headers: HeaderMap,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let fetch = |caller: Option<&Caller>| {
        let request = call.for_maybe(
            caller,
            pb::GetStockRequest {
                product_id: id.to_string(),
            },
        );
        let mut catalog = state.catalog();
        async move {
            let reply = catalog.get_stock(request).await?.into_inner();
            Ok::<_, ApiError>(Stock::new(&reply.product_id, reply.stock)?)
        }
    };
    // An anonymous answer is of a visible product: the same for everyone.
    cached_read(&state, ReadKey::Stock(id), &headers, caller, fetch, |_: &Stock| true).await
}
