//! The OpenAPI 3.1 document of the REST API, generated from the handlers' annotations and
//! served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::problem::Problem;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "shop", description = "The shop public REST API (API.md).", version = "1"),
    servers((url = "/api/v1")),
    components(schemas(Problem))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
