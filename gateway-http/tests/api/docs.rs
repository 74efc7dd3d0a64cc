//! The API reference page: served from the binary with every file it loads, under a content
//! security policy that keeps it on this gateway, and cached with strong validators. (A real
//! browser renders it in `shop/tests/api_docs_browser.rs`.)

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, Request, StatusCode, header},
};

use crate::helpers::TestApp;

const BUNDLE: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");

async fn get(app: &TestApp, path: &str, headers: &[(header::HeaderName, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(name, *value);
    }
    app.send_raw(builder.body(Body::empty()).unwrap()).await
}

/// Every `src="…"` and `href="…"` value in `html`.
fn references(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| {
            html.split(attribute)
                .skip(1)
                .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_page_is_served_under_a_policy_that_keeps_it_on_this_gateway() {
    let app = TestApp::without_services().await;
    let (status, headers, body) = get(&app, "/docs", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'"] {
        assert!(policy.contains(directive), "{policy} lacks {directive}");
    }
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(html.contains("id=\"swagger-ui\""), "{html}");

    // `/docs/` is the same page.
    let (status, headers, _) = get(&app, "/docs/", &[]).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers[header::LOCATION], "/docs");
}

#[tokio::test]
async fn every_file_the_page_loads_is_served_by_the_gateway_itself() {
    let app = TestApp::without_services().await;
    let (_, _, body) = get(&app, "/docs", &[]).await;
    let html = String::from_utf8(body.to_vec()).unwrap();
    let references = references(&html);
    assert!(references.len() >= 5, "{references:?}");
    for reference in &references {
        assert!(reference.starts_with('/'), "{reference} is not on this gateway");
        let (status, headers, body) = get(&app, reference, &[]).await;
        assert_eq!(status, StatusCode::OK, "{reference}");
        assert!(!body.is_empty(), "{reference}");
        assert!(headers[header::ETAG].to_str().unwrap().starts_with('"'), "{reference}");
        let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
        let expected = match reference.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "png" => "image/png",
            "json" => "application/json",
            "yaml" => "application/yaml",
            _ => "text/plain; charset=utf-8",
        };
        assert_eq!(content_type, expected, "{reference}");
    }

    // The bundle is the vendored file, byte for byte, plain and gzip-compressed.
    let (_, headers, plain) = get(&app, "/docs/swagger-ui/swagger-ui-bundle.js", &[]).await;
    assert_eq!(&plain[..], BUNDLE);
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=3600");
    let (_, headers, zipped) = get(
        &app,
        "/docs/swagger-ui/swagger-ui-bundle.js",
        &[(header::ACCEPT_ENCODING, "gzip, deflate, br")],
    )
    .await;
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert!(zipped.len() < BUNDLE.len() / 2);
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut inflated).unwrap();
    assert_eq!(inflated, BUNDLE);
}

#[tokio::test]
async fn assets_revalidate_with_their_etag() {
    let app = TestApp::without_services().await;
    for path in ["/docs", "/docs/docs.js", "/docs/swagger-ui/swagger-ui.css"] {
        let (_, headers, _) = get(&app, path, &[(header::ACCEPT_ENCODING, "gzip")]).await;
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        let (status, _, body) = get(
            &app,
            path,
            &[(header::ACCEPT_ENCODING, "gzip"), (header::IF_NONE_MATCH, &etag)],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(body.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn only_the_vendored_files_are_served() {
    let app = TestApp::without_services().await;
    for path in [
        "/docs/swagger-ui/index.html",
        "/docs/swagger-ui/swagger-ui-bundle.js.map",
        "/docs/swagger-ui/..%2F..%2FCargo.toml",
        "/docs/other.js",
    ] {
        let reply = app.send(Request::get(path).body(Body::empty()).unwrap()).await;
        reply.assert_problem(StatusCode::NOT_FOUND, "not_found");
    }
}
