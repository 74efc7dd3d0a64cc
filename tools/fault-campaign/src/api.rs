//! A small client of the REST edge (`/api/v1`) that never panics: every call gives the reply
//! (status and JSON body) or the transport error, and the caller decides what a failure means.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How long one request may take before the client gives up on it (the gateway's own request
/// timeout is 15 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A reply: its status and its body as JSON (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// The problem+json `code` of an error reply.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// The REST edge of one gateway.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    origin: String,
}

impl Api {
    /// The gateway at `origin` (`http://host:port`).
    pub fn new(origin: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self::with_client(http, origin))
    }

    /// The gateway at `origin` through `http`, a client shared with other callers (its own
    /// timeout applies).
    pub fn with_client(http: reqwest::Client, origin: String) -> Self {
        Self { http, origin }
    }

    /// Sends `method path` (under `/api/v1` unless the path starts with `/readyz`), with a
    /// bearer `token`, extra `headers` and a JSON `body` when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, reqwest::Error> {
        let url = if path.starts_with("/readyz") {
            format!("{}{path}", self.origin)
        } else {
            format!("{}/api/v1{path}", self.origin)
        };
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// The origin it calls, `http://host:port`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `GET path` with `token`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply, reqwest::Error> {
        self.send(Method::GET, path, token, &[], None).await
    }

    /// `POST path` with `token` and a JSON `body`.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Reply, reqwest::Error> {
        self.send(Method::POST, path, token, &[], Some(body)).await
    }

    /// Every item of the list at `path` (`/orders`, say) as `token` sees it, page by page
    /// (100 a page) following `next_cursor`; an error names `what` was being read.
    pub async fn all_items(&self, what: &str, path: &str, token: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match &cursor {
                Some(cursor) => format!("{path}?limit=100&cursor={cursor}"),
                None => format!("{path}?limit=100"),
            };
            let reply = self.get(&page, token).await.with_context(|| what.to_owned())?;
            if reply.status != StatusCode::OK {
                anyhow::bail!("{what}: {} {}", reply.status, reply.body);
            }
            let Value::Object(mut body) = reply.body else {
                anyhow::bail!("{what}: a page that is not a JSON object");
            };
            match body.remove("items") {
                Some(Value::Array(page_items)) => items.extend(page_items),
                _ => anyhow::bail!("{what}: a page without items"),
            }
            match body.get("next_cursor").and_then(Value::as_str) {
                // Cursors are opaque: encoded for the query string whatever they hold.
                Some(next) => cursor = Some(url::form_urlencoded::byte_serialize(next.as_bytes()).collect()),
                None => return Ok(items),
            }
        }
    }
}

/// Whether a failed call is worth retrying as is: the edge or a service behind it was away
/// (transport error, 5xx, 429) rather than the request being wrong.
pub fn is_retryable(outcome: &Result<Reply, reqwest::Error>) -> bool {
    match outcome {
        Err(_) => true,
        Ok(reply) => {
            reply.status.is_server_error()
                || reply.status == StatusCode::TOO_MANY_REQUESTS
                // Another attempt with the same key is still being placed: ask again later.
                || reply.code() == "idempotency_key_in_use"
        }
    }
}
