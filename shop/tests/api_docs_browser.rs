//! The API reference in a real browser: Debian's Chromium, headless, opens `/docs` on the
//! `shop` binary with every way off the machine closed (host names resolve nowhere, and
//! everything not on loopback goes to a proxy that is really a trap this test watches), and
//! records every request the page makes through the DevTools protocol. It checks that the page
//! renders every operation of the OpenAPI document, that signing in with "Try it out" authorizes
//! the page so a 🔒 operation then succeeds against the same gateway, and that no request left
//! loopback. Screenshots go to `target/test-artifacts/`.
//!
//! Chromium is found as `SHOP_TEST_CHROMIUM` or `chromium` on the `PATH`; without it this test
//! fails (CI installs it: `.ci/run`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/loopback.rs"]
mod loopback;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chromiumoxide::{
    Browser, BrowserConfig, Page,
    cdp::browser_protocol::{
        input::InsertTextParams,
        log::{EventEntryAdded, LogEntryLevel},
        network::EventRequestWillBeSent,
    },
    page::ScreenshotParams,
};
use futures::StreamExt as _;
use serde_json::Value;

const ADMIN_EMAIL: &str = "docs-admin@example.com";
const ADMIN_PASSWORD: &str = "Docs-page-1";

/// The Chromium binary, or a failure that says how to get one.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOP_TEST_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is needed for the API reference browser test and is not on the PATH: \
                 install Debian's package (`apt-get install chromium`, as `bash .ci/run` does) or \
                 set SHOP_TEST_CHROMIUM to its binary"
            )
        })
}

/// Where test artifacts go: `target/test-artifacts/`, next to the binaries under test.
fn artifacts_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_shop"));
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in target/<profile>/");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the page may request `url`: this machine's loopback, or data that never leaves
/// the page.
fn stays_on_loopback(url: &str) -> bool {
    if ["data:", "blob:", "about:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return true;
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    ["http", "https", "ws", "wss"].contains(&scheme)
        && (host == "localhost"
            || host == "[::1]"
            || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()))
}

/// A loopback listener posing as the browser's proxy: whatever Chromium would send off the
/// machine arrives here instead, is counted, and is dropped.
async fn proxy_trap() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let caught = Arc::new(AtomicUsize::new(0));
    let counter = caught.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(connection);
        }
    });
    (address, caught)
}

/// Evaluates `expression` until it yields something other than `null`/`false`, for at most
/// `within`; panics with `what` otherwise.
async fn wait_for(page: &Page, expression: &str, within: Duration, what: &str) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let value = page
            .evaluate(expression)
            .await
            .ok()
            .and_then(|result| result.into_value::<Value>().ok())
            .unwrap_or(Value::Null);
        if !value.is_null() && value != Value::Bool(false) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JavaScript expression for the operation block of `method path` (as Swagger UI renders it).
fn operation(method: &str, path: &str) -> String {
    format!(
        "[...document.querySelectorAll('.opblock')].find(block => \
           block.querySelector('.opblock-summary-method')?.textContent.trim() === '{method}' && \
           block.querySelector('.opblock-summary-path')?.getAttribute('data-path') === '{path}')"
    )
}

/// Opens `method path`, presses "Try it out", optionally replaces the request body with
/// `body`, presses "Execute", and returns the live response's status and body text.
async fn try_it(page: &Page, method: &str, path: &str, body: Option<&str>) -> (String, String) {
    let block = operation(method, path);
    page.evaluate(format!("({block}).querySelector('.opblock-summary-control').click()"))
        .await
        .unwrap();
    wait_for(
        page,
        &format!("(() => {{ const b = ({block}).querySelector('.try-out__btn'); if (!b) return null; b.click(); return true; }})()"),
        Duration::from_secs(10),
        &format!("the Try it out button of {method} {path}"),
    )
    .await;
    if let Some(body) = body {
        wait_for(
            page,
            &format!(
                "(() => {{ const t = ({block}).querySelector('textarea.body-param__text'); if (!t) return null; \
                   t.focus(); t.select(); return true; }})()"
            ),
            Duration::from_secs(10),
            &format!("the body editor of {method} {path}"),
        )
        .await;
        // Typed as a person would (an input event React sees), replacing the example.
        page.execute(InsertTextParams::new(body)).await.unwrap();
        wait_for(
            page,
            &format!(
                "({block}).querySelector('textarea.body-param__text').value === {}",
                serde_json::to_string(body).unwrap()
            ),
            Duration::from_secs(5),
            "the typed body",
        )
        .await;
    }
    page.evaluate(format!("({block}).querySelector('.btn.execute').click()"))
        .await
        .unwrap();
    let reply = wait_for(
        page,
        &format!(
            "(() => {{ const s = ({block}).querySelector('.live-responses-table tr.response .response-col_status'); \
               if (!s) return null; \
               const b = ({block}).querySelector('.live-responses-table tr.response .response-col_description pre'); \
               return [s.textContent.trim(), b ? b.textContent : '']; }})()"
        ),
        Duration::from_secs(20),
        &format!("the response of {method} {path}"),
    )
    .await;
    (
        reply[0].as_str().unwrap().to_owned(),
        reply[1].as_str().unwrap().to_owned(),
    )
}

/// Starts `shop` with an admin account; returns it and its REST address.
async fn start_shop(data: &Path) -> (tokio::process::Child, SocketAddr) {
    loopback::spawn_shop(
        loopback::shop_command(data)
            .env("SHOP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("SHOP_ADMIN_PASSWORD", ADMIN_PASSWORD),
    )
    .await
}

#[tokio::test]
async fn the_api_reference_renders_and_works_offline_in_chromium() {
    let chromium = chromium();
    let data = tempfile::tempdir().unwrap();
    let (mut shop, http) = start_shop(data.path()).await;
    let (trap, caught) = proxy_trap().await;

    // The operations the page must show: those of the document the gateway serves.
    let document: Value = reqwest::get(format!("http://{http}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented: BTreeSet<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    let server = document["servers"][0]["url"].as_str().unwrap().to_owned();

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(&chromium)
        .user_data_dir(profile.path())
        .no_sandbox()
        .window_size(1280, 1024)
        .viewport(None)
        .launch_timeout(Duration::from_secs(30))
        .request_timeout(Duration::from_secs(30))
        .args([
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-domain-reliability".to_owned(),
            // No name resolves (loopback addresses are used as they are) ...
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost".to_owned(),
            // ... and whatever is not loopback (which Chromium never proxies) goes to the trap.
            format!("--proxy-server=http://{trap}"),
        ])
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config)
        .await
        .unwrap_or_else(|error| panic!("launching {}: {error}", chromium.display()));
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let page = browser.new_page("about:blank").await.unwrap();
    let requested = Arc::new(Mutex::new(Vec::<(String, String, bool)>::new()));
    let mut requests = page.event_listener::<EventRequestWillBeSent>().await.unwrap();
    let log = requested.clone();
    tokio::spawn(async move {
        while let Some(event) = requests.next().await {
            let authorized = event
                .request
                .headers
                .inner()
                .as_object()
                .is_some_and(|headers| headers.keys().any(|name| name.eq_ignore_ascii_case("authorization")));
            log.lock()
                .unwrap()
                .push((event.request.method.clone(), event.request.url.clone(), authorized));
        }
    });
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut entries = page.event_listener::<EventEntryAdded>().await.unwrap();
    let error_log = errors.clone();
    tokio::spawn(async move {
        while let Some(event) = entries.next().await {
            if event.entry.level == LogEntryLevel::Error {
                error_log
                    .lock()
                    .unwrap()
                    .push(format!("{} ({:?})", event.entry.text, event.entry.url));
            }
        }
    });

    page.goto(format!("http://{http}/docs")).await.unwrap();

    // Every documented operation is rendered, under the document's server.
    let rendered: Vec<String> = serde_json::from_value(
        wait_for(
            &page,
            &format!(
                "(() => {{ const ops = [...document.querySelectorAll('.opblock')].map(b => \
                   b.querySelector('.opblock-summary-method').textContent.trim() + ' ' + \
                   b.querySelector('.opblock-summary-path').getAttribute('data-path')); \
                   return ops.length >= {} ? ops : null; }})()",
                documented.len()
            ),
            Duration::from_secs(60),
            "Swagger UI to render every operation",
        )
        .await,
    )
    .unwrap();
    let rendered: BTreeSet<String> = rendered.into_iter().collect();
    assert_eq!(rendered, documented);
    let servers = wait_for(
        &page,
        "document.querySelector('.servers select')?.value",
        Duration::from_secs(5),
        "the server choice",
    )
    .await;
    assert_eq!(servers, server);
    let orders = page
        .evaluate(format!(
            "({}).querySelector('.opblock-summary').innerText",
            operation("POST", "/orders")
        ))
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert!(orders.contains("POST") && orders.contains("/orders"), "{orders}");
    // With the server it is listed under, that reads POST /api/v1/orders.
    assert_eq!(server, "/api/v1");
    // Authentication is offered: the Authorize button and the bearer scheme behind it.
    page.evaluate("document.querySelector('.auth-wrapper .authorize').click()")
        .await
        .unwrap();
    let scheme = wait_for(
        &page,
        "document.querySelector('.auth-container')?.innerText",
        Duration::from_secs(5),
        "the authorization dialog",
    )
    .await;
    let scheme = scheme.as_str().unwrap();
    assert!(scheme.contains("bearer") && scheme.contains("/auth/login"), "{scheme}");
    page.evaluate("document.querySelector('.auth-btn-wrapper .btn-done, .modal-ux .close-modal').click()")
        .await
        .unwrap();

    let screenshot = page
        .screenshot(ScreenshotParams::builder().full_page(true).build())
        .await
        .unwrap();
    std::fs::write(artifacts_dir().join("docs.png"), screenshot).unwrap();

    // "Try it out": sign in, and the page is authorized for the 🔒 operations.
    let credentials = serde_json::json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }).to_string();
    let (status, body) = try_it(&page, "POST", "/auth/login", Some(&credentials)).await;
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("access_token"), "{body}");
    let (status, body) = try_it(&page, "GET", "/users/me", None).await;
    assert_eq!(status, "200", "{body}");
    assert!(body.contains(ADMIN_EMAIL), "{body}");
    page.evaluate(format!(
        "({}).querySelector('.live-responses-table').scrollIntoView({{block: 'center'}})",
        operation("GET", "/users/me")
    ))
    .await
    .unwrap();
    let screenshot = page.screenshot(ScreenshotParams::builder().build()).await.unwrap();
    std::fs::write(artifacts_dir().join("docs-try-it.png"), screenshot).unwrap();

    // Nothing left the machine, and the request log really saw the page's traffic.
    let requested = requested.lock().unwrap().clone();
    let escaped: Vec<_> = requested.iter().filter(|(_, url, _)| !stays_on_loopback(url)).collect();
    assert!(escaped.is_empty(), "requests that left loopback: {escaped:?}");
    assert_eq!(caught.load(Ordering::SeqCst), 0, "Chromium tried to reach a proxy");
    let base = format!("http://{http}");
    for expected in [
        ("GET", format!("{base}/docs"), false),
        ("GET", format!("{base}/docs/swagger-ui/swagger-ui-bundle.js"), false),
        ("GET", format!("{base}/openapi.json"), false),
        ("POST", format!("{base}/api/v1/auth/login"), false),
        ("GET", format!("{base}/api/v1/users/me"), true),
    ] {
        assert!(
            requested
                .iter()
                .any(|(method, url, authorized)| (method.as_str(), url, *authorized)
                    == (expected.0, &expected.1, expected.2)),
            "{expected:?} not among the requests: {requested:#?}"
        );
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");

    browser.close().await.unwrap();
    browser.wait().await.unwrap();
    events.abort();
    shop.kill().await.unwrap();
}

#[test]
fn only_loopback_and_inline_urls_count_as_staying_home() {
    for url in [
        "http://127.0.0.1:8080/docs",
        "http://localhost/openapi.json",
        "http://[::1]:80/",
        "ws://127.0.0.2:9/x",
        "data:image/svg+xml;base64,AAAA",
        "about:blank",
    ] {
        assert!(stays_on_loopback(url), "{url}");
    }
    for url in [
        "https://validator.swagger.io/validator",
        "http://10.0.0.1/",
        "http://127.0.0.1.example.com/",
        "chrome://newtab",
        "http://localhost.evil/",
    ] {
        assert!(!stays_on_loopback(url), "{url}");
    }
}
