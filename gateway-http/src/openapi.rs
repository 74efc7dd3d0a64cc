//! The OpenAPI 3.1 document of the REST API, generated from the handlers' annotations, with
//! the error responses every route shares. It is built and serialised once per process (JSON
//! and YAML, each also gzip-compressed) and served from memory at `/openapi.json` and
//! `/openapi.yaml` with a strong `ETag`, so a client polling it gets a 304.

use std::sync::LazyLock;

use anyhow::Context as _;
use axum::{
    http::{HeaderMap, StatusCode},
    response::{IntoResponse as _, Response},
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{
    fixed::{Fixed, Freshness},
    problem::{ApiError, Problem},
    routes,
};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "shop", description = "The shop public REST API.", version = "1"),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth),
    components(schemas(Problem)),
    tags(
        (name = "accounts", description = "Sign-up, sign-in and sessions."),
        (name = "users", description = "The caller's account; accounts and roles for admins."),
        (name = "products", description = "The catalog: products and stock."),
        (name = "wishlist", description = "The caller's wishlist."),
        (name = "cart", description = "The caller's cart."),
        (name = "orders", description = "Orders, cancellations and returns."),
    ),
    paths(
        routes::accounts::start_email_verification,
        routes::accounts::confirm_email_verification,
        routes::accounts::sign_up,
        routes::accounts::login,
        routes::accounts::refresh,
        routes::accounts::logout,
        routes::users::get_me,
        routes::users::update_me,
        routes::users::change_password,
        routes::users::delete_me,
        routes::users::list_users,
        routes::users::set_role,
        routes::products::list_products,
        routes::products::get_product,
        routes::products::create_product,
        routes::products::update_product,
        routes::products::delete_product,
        routes::products::set_stock,
        routes::products::get_stock,
        routes::wishlist::list_wishlist,
        routes::wishlist::add_wishlist_item,
        routes::wishlist::update_wishlist_item,
        routes::wishlist::remove_wishlist_item,
        routes::cart::get_cart,
        routes::cart::add_cart_item,
        routes::cart::update_cart_item,
        routes::cart::remove_cart_item,
        routes::cart::clear_cart,
        routes::orders::place_order,
        routes::orders::list_orders,
        routes::orders::get_order,
        routes::orders::cancel_order,
        routes::orders::return_order_item,
    )
)]
pub struct ApiDoc;

/// The document in each format it is served in.
#[derive(Debug)]
pub struct Documents {
    /// `application/json`.
    pub json: Fixed,
    /// `application/yaml`.
    pub yaml: Fixed,
}

impl Documents {
    fn build() -> anyhow::Result<Self> {
        let document = ApiDoc::openapi();
        let json = serde_json::to_vec(&document).context("serialising the OpenAPI document as JSON")?;
        let yaml = document.to_yaml().context("serialising the OpenAPI document as YAML")?;
        Ok(Self {
            json: Fixed::new(json, "application/json", Freshness::Revalidate),
            yaml: Fixed::new(yaml, "application/yaml", Freshness::Revalidate),
        })
    }
}

static DOCUMENTS: LazyLock<Result<Documents, String>> =
    LazyLock::new(|| Documents::build().map_err(|error| format!("{error:#}")));

/// The documents, built on first use; the gateway calls this at start, so a document that
/// cannot be built stops the process there rather than failing requests later.
pub fn documents() -> anyhow::Result<&'static Documents> {
    DOCUMENTS.as_ref().map_err(|error| anyhow::anyhow!("{error}"))
}

/// `GET /openapi.json`.
pub async fn json(request: HeaderMap) -> Response {
    serve(request, |documents| &documents.json)
}

/// `GET /openapi.yaml`.
pub async fn yaml(request: HeaderMap) -> Response {
    serve(request, |documents| &documents.yaml)
}

fn serve(request: HeaderMap, format: fn(&Documents) -> &Fixed) -> Response {
    match documents() {
        Ok(documents) => format(documents).respond(&request),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document cannot be served");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the API description is unavailable",
            )
            .into_response()
        }
    }
}

/// Declares the `bearer` scheme the 🔒 operations name: `Authorization: Bearer <access_token>`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from POST /auth/login or POST /auth/refresh."))
                    .build(),
            ),
        );
    }
}
