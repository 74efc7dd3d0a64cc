//! The interactive API reference at `/docs`: Swagger UI on the gateway's own OpenAPI
//! document. Every file the page loads is compiled into the binary (Swagger UI from
//! `assets/swagger-ui`, vendored at a pinned version by `scripts/vendor-swagger-ui`), so the
//! page works with no network, and its content security policy lets it reach nothing but this
//! gateway.

use std::sync::LazyLock;

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, header},
    response::{IntoResponse as _, Redirect, Response},
    routing::get,
};

use crate::{
    AppState,
    fixed::{Fixed, Freshness},
    problem::ApiError,
};

/// Only this origin, for scripts, styles, images and calls; inline styles because Swagger UI
/// sets element styles; `data:` images for its inline icons.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The vendored Swagger UI files the gateway serves under `/docs/swagger-ui/`.
const SWAGGER_UI: &[(&str, &[u8], &str)] = &[
    (
        "swagger-ui-bundle.js",
        include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "swagger-ui.css",
        include_bytes!("../assets/swagger-ui/swagger-ui.css"),
        "text/css; charset=utf-8",
    ),
    (
        "favicon-32x32.png",
        include_bytes!("../assets/swagger-ui/favicon-32x32.png"),
        "image/png",
    ),
    (
        "LICENSE",
        include_bytes!("../assets/swagger-ui/LICENSE"),
        "text/plain; charset=utf-8",
    ),
    (
        "NOTICE",
        include_bytes!("../assets/swagger-ui/NOTICE"),
        "text/plain; charset=utf-8",
    ),
    (
        "swagger-ui-bundle.js.LICENSE.txt",
        include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js.LICENSE.txt"),
        "text/plain; charset=utf-8",
    ),
];

/// The page and its script.
struct Page {
    html: Fixed,
    script: Fixed,
}

// Built (and compressed) once per process, on the first request for them.
static PAGE: LazyLock<Page> = LazyLock::new(|| Page {
    html: Fixed::new(
        include_str!("../assets/docs/index.html"),
        "text/html; charset=utf-8",
        Freshness::Revalidate,
    )
    .with_header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
    .with_header(header::REFERRER_POLICY, "no-referrer"),
    script: Fixed::new(
        include_str!("../assets/docs/docs.js"),
        "text/javascript; charset=utf-8",
        Freshness::Revalidate,
    ),
});

static ASSETS: LazyLock<Vec<(&'static str, Fixed)>> = LazyLock::new(|| {
    SWAGGER_UI
        .iter()
        .map(|(name, bytes, content_type)| (*name, Fixed::new(*bytes, content_type, Freshness::Hour)))
        .collect()
});

/// The `/docs` routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/docs", get(page))
        .route("/docs/", get(|| async { Redirect::permanent("/docs") }))
        .route("/docs/docs.js", get(script))
        .route("/docs/swagger-ui/{file}", get(asset))
}

async fn page(request: HeaderMap) -> Response {
    PAGE.html.respond(&request)
}

async fn script(request: HeaderMap) -> Response {
    PAGE.script.respond(&request)
}

async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == file) {
        Some((_, fixed)) => fixed.respond(&request),
        None => ApiError::not_found().into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sha2::{Digest as _, Sha256};

    use super::SWAGGER_UI;

    /// The embedded files are exactly the ones `scripts/vendor-swagger-ui` verified against
    /// the pinned npm package.
    #[test]
    fn every_embedded_swagger_ui_file_matches_its_recorded_checksum() {
        let sums = include_str!("../assets/swagger-ui/SHA256SUMS");
        for (name, bytes, _) in SWAGGER_UI {
            let recorded = sums
                .lines()
                .find_map(|line| line.split_once("  ").filter(|(_, file)| file == name))
                .map(|(sum, _)| sum)
                .unwrap_or_else(|| panic!("{name} is not in SHA256SUMS"));
            let actual: String = Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!(actual, recorded, "{name} differs from the vendored swagger-ui-dist");
        }
    }
}
