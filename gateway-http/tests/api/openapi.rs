//! The OpenAPI document against the REST contract: every (method, path) row of the contract
//! must be both routed and described, with the bearer scheme on 🔒 rows and problem+json on
//! every error. A route missing from the router or from the document fails here.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode, header};
use serde_json::Value;

use crate::helpers::{TestApp, request};

/// Every row of the contract: method, path (relative to `/api/v1`), and whether it needs a
/// token.
const CONTRACT: &[(&str, &str, bool)] = &[
    ("POST", "/auth/email-verifications", false),
    ("POST", "/auth/email-verifications/confirm", false),
    ("POST", "/users", false),
    ("POST", "/auth/login", false),
    ("POST", "/auth/refresh", false),
    ("POST", "/auth/logout", true),
    ("GET", "/users/me", true),
    ("PATCH", "/users/me", true),
    ("PUT", "/users/me/password", true),
    ("DELETE", "/users/me", true),
    ("GET", "/users", true),
    ("PUT", "/users/{id}/role", true),
    ("GET", "/products", false),
    ("GET", "/products/{id}", false),
    ("POST", "/products", true),
    ("PATCH", "/products/{id}", true),
    ("DELETE", "/products/{id}", true),
    ("PUT", "/products/{id}/stock", true),
    ("GET", "/products/{id}/stock", false),
    ("GET", "/wishlist", true),
    ("POST", "/wishlist", true),
    ("PATCH", "/wishlist/{item_id}", true),
    ("DELETE", "/wishlist/{item_id}", true),
    ("GET", "/cart", true),
    ("POST", "/cart/items", true),
    ("PATCH", "/cart/items/{item_id}", true),
    ("DELETE", "/cart/items/{item_id}", true),
    ("DELETE", "/cart", true),
    ("POST", "/orders", true),
    ("GET", "/orders", true),
    ("GET", "/orders/{id}", true),
    ("POST", "/orders/{id}/cancel", true),
    ("POST", "/orders/{id}/items/{item_id}/return", true),
];

async fn document(app: &TestApp) -> Value {
    let reply = app
        .send(
            axum::http::Request::get("/openapi.json")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

/// `path` with every `{param}` replaced by a fresh UUID.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                uuid::Uuid::new_v4().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_contract_row_is_routed() {
    let app = TestApp::without_services().await;
    for (method, path, protected) in CONTRACT {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app.send(request(method.clone(), &concrete(path), None, None)).await;
        assert!(
            reply.status != StatusCode::NOT_FOUND && reply.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is not routed: {reply:?}"
        );
        if *protected {
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} must need a token"
            );
        }
    }
}

#[tokio::test]
async fn every_contract_row_is_documented_and_nothing_else() {
    let app = TestApp::without_services().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], "/api/v1");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let contract: BTreeSet<_> = CONTRACT
        .iter()
        .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let missing: Vec<_> = contract.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&contract).collect();
    assert!(
        extra.is_empty(),
        "documented routes that are not in the contract: {extra:?}"
    );
}

#[tokio::test]
async fn protected_rows_name_the_bearer_scheme_and_errors_are_problems() {
    let app = TestApp::without_services().await;
    let doc = document(&app).await;
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["Problem"].is_object());

    for (method, path, protected) in CONTRACT {
        let operation = &doc["paths"][path][method.to_lowercase()];
        let security = operation["security"].as_array().cloned().unwrap_or_default();
        let names_bearer = security.iter().any(|entry| entry.get("bearer").is_some());
        let anonymous_allowed = security.is_empty() || security.iter().any(|entry| entry == &serde_json::json!({}));
        assert!(!*protected || names_bearer, "{method} {path}: no bearer security");
        assert!(
            !*protected || !anonymous_allowed,
            "{method} {path}: documented as public"
        );
        assert!(
            *protected || anonymous_allowed,
            "{method} {path}: documented as protected"
        );

        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path}: no success response"
        );
        if *protected {
            assert!(responses.contains_key("401"), "{method} {path}: 401 not documented");
        }
        assert!(responses.contains_key("429"), "{method} {path}: 429 not documented");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/Problem",
                    "{method} {path} {status}: not a problem+json"
                );
            }
        }
    }
}

fn get(path: &str, headers: &[(header::HeaderName, &str)]) -> axum::http::Request<axum::body::Body> {
    let mut builder = axum::http::Request::get(path);
    for (name, value) in headers {
        builder = builder.header(name, *value);
    }
    builder.body(axum::body::Body::empty()).unwrap()
}

#[tokio::test]
async fn the_document_carries_a_strong_etag_and_a_conditional_request_gets_304() {
    let app = TestApp::without_services().await;
    let (status, first, body) = app.send_raw(get("/openapi.json", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first[header::CONTENT_TYPE], "application/json");
    assert_eq!(first[header::CACHE_CONTROL], "public, no-cache");
    let etag = first[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "a strong ETag: {etag}"
    );
    assert!(!body.is_empty());

    // The same bytes under the same tag every time, from this router and from a new one.
    let (_, again, body_again) = app.send_raw(get("/openapi.json", &[])).await;
    assert_eq!(again[header::ETAG], etag.as_str());
    assert_eq!(body_again, body);
    let other = TestApp::without_services().await;
    let (_, elsewhere, _) = other.send_raw(get("/openapi.json", &[])).await;
    assert_eq!(elsewhere[header::ETAG], etag.as_str());

    let (status, headers, empty) = app
        .send_raw(get("/openapi.json", &[(header::IF_NONE_MATCH, &etag)]))
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert_eq!(headers[header::CACHE_CONTROL], "public, no-cache");
    assert!(empty.is_empty());

    let (status, _, _) = app
        .send_raw(get(
            "/openapi.json",
            &[(header::IF_NONE_MATCH, "\"an-older-document\"")],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_gzip_representation_has_its_own_etag_and_revalidates_too() {
    let app = TestApp::without_services().await;
    let (_, plain, plain_body) = app.send_raw(get("/openapi.json", &[])).await;
    let (status, zipped, zipped_body) = app
        .send_raw(get("/openapi.json", &[(header::ACCEPT_ENCODING, "gzip")]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(zipped[header::CONTENT_ENCODING], "gzip");
    assert_eq!(zipped[header::VARY], "accept-encoding");
    assert_ne!(zipped[header::ETAG], plain[header::ETAG]);
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped_body[..]), &mut inflated).unwrap();
    assert_eq!(inflated, plain_body);

    let etag = zipped[header::ETAG].to_str().unwrap().to_owned();
    let (status, _, _) = app
        .send_raw(get(
            "/openapi.json",
            &[(header::ACCEPT_ENCODING, "gzip"), (header::IF_NONE_MATCH, &etag)],
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn the_yaml_document_is_the_same_api_and_is_cached_alike() {
    let app = TestApp::without_services().await;
    let json = document(&app).await;
    let (status, headers, body) = app.send_raw(get("/openapi.yaml", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/yaml");
    let yaml: Value = serde_norway::from_slice(&body).unwrap();
    assert_eq!(yaml, json);

    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, _, _) = app
        .send_raw(get("/openapi.yaml", &[(header::IF_NONE_MATCH, &etag)]))
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn product_schemas_state_the_bounds_the_catalog_enforces() {
    let app = TestApp::without_services().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    for schema in ["CreateProductRequest", "UpdateProductRequest"] {
        let properties = &schemas[schema]["properties"];
        assert_eq!(properties["price"]["maximum"], 1_000_000_000_000_i64, "{schema}");
        assert_eq!(properties["name"]["maxLength"], 200, "{schema}");
        for field in ["name", "description"] {
            let pattern = properties[field]["pattern"].as_str().unwrap_or_default();
            assert!(
                pattern.contains("\\u0000"),
                "{schema}.{field} states that NUL is refused"
            );
        }
    }
    assert_eq!(
        schemas["CreateProductRequest"]["properties"]["stock"]["maximum"],
        1_000_000_000
    );
    assert_eq!(
        schemas["CreateProductRequest"]["properties"]["currency"]["pattern"],
        "^([A-Z]{3})?$"
    );
    assert_eq!(
        schemas["SetStockRequest"]["properties"]["stock"]["maximum"],
        1_000_000_000
    );
    let q = doc["paths"]["/products"]["get"]["parameters"]
        .as_array()
        .and_then(|parameters| parameters.iter().find(|parameter| parameter["name"] == "q"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(q["schema"]["maxLength"], 200, "{q}");
    assert!(q["schema"]["pattern"].is_string(), "{q}");
}

/// The rules the user, catalog and order services enforce on input, stated in the document so
/// that a client (and the API fuzzer, `scripts/fuzz-api`) can tell valid input from invalid.
#[tokio::test]
async fn account_list_and_order_schemas_state_the_rules_the_services_enforce() {
    let app = TestApp::without_services().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let property = |schema: &str, field: &str| schemas[schema]["properties"][field].clone();
    for schema in [
        "StartVerificationRequest",
        "ConfirmVerificationRequest",
        "SignUpRequest",
        "LoginRequest",
    ] {
        let email = property(schema, "email");
        assert_eq!(email["format"], "email", "{schema}.email");
        assert_eq!(email["maxLength"], 254, "{schema}.email");
    }
    for (schema, field) in [("SignUpRequest", "password"), ("ChangePasswordRequest", "new_password")] {
        let password = property(schema, field);
        assert_eq!(
            (password["minLength"].clone(), password["maxLength"].clone()),
            (8.into(), 128.into()),
            "{schema}.{field}"
        );
    }
    for (schema, field) in [
        ("LoginRequest", "password"),
        ("ChangePasswordRequest", "current_password"),
        ("DeleteAccountRequest", "password"),
    ] {
        let password = property(schema, field);
        assert_eq!(
            (password["minLength"].clone(), password["maxLength"].clone()),
            (1.into(), 128.into()),
            "{schema}.{field}"
        );
    }
    for schema in ["SignUpRequest", "UpdateProfileRequest"] {
        for (field, max) in [("name", 100), ("phone", 32), ("address", 500)] {
            let value = property(schema, field);
            assert_eq!(value["minLength"], 1, "{schema}.{field}");
            assert_eq!(value["maxLength"], max, "{schema}.{field}");
            let pattern = value["pattern"].as_str().unwrap_or_default();
            assert!(
                pattern.contains("\\s"),
                "{schema}.{field} states that blank is refused: {pattern}"
            );
        }
    }
    for schema in ["AddWishlistItemRequest", "QuantityRequest", "AddCartItemRequest"] {
        assert_eq!(property(schema, "quantity")["maximum"], 1000, "{schema}.quantity");
    }
    assert_eq!(property("PlaceOrderRequest", "items")["minItems"], 1);
    assert_eq!(property("PlaceOrderRequest", "items")["maxItems"], 100);

    let parameter = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|parameters| parameters.iter().find(|parameter| parameter["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    for name in ["min_price", "max_price"] {
        assert_eq!(parameter("/products", "get", name)["schema"]["minimum"], 0, "{name}");
    }
    let key = parameter("/orders", "post", "Idempotency-Key");
    assert_eq!(key["schema"]["maxLength"], 255, "{key}");
    assert_eq!(
        key["schema"]["pattern"], r"^[\x20-\x7E]*[\x21-\x7E][\x20-\x7E]*$",
        "{key}"
    );
}

#[tokio::test]
async fn the_cached_reads_document_their_validators_and_304() {
    let app = TestApp::without_services().await;
    let document = document(&app).await;
    for path in ["/products", "/products/{id}", "/products/{id}/stock"] {
        let get = &document["paths"][path]["get"];
        assert!(get["responses"]["304"].is_object(), "{path}: no 304");
        for header in ["ETag", "Cache-Control", "Age"] {
            assert!(
                get["responses"]["200"]["headers"][header].is_object(),
                "{path}: 200 without {header}"
            );
        }
        let conditional = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|parameter| parameter["name"] == "If-None-Match" && parameter["in"] == "header");
        assert!(conditional, "{path}: If-None-Match not documented");
    }
}
