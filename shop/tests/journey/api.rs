//! A thin REST client for the `/api/v1` contract of docs/api.md: every reply with its status,
//! headers and JSON body, and assertions on problem+json errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fmt,
    time::{Duration, Instant},
};

use reqwest::{
    Method, StatusCode,
    header::{self, HeaderMap},
};
use serde_json::Value;

/// The media type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A gateway's REST API.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    /// `http://host:port`, without the `/api/v1` prefix.
    pub origin: String,
    /// The `Host` header of every request, when it is not the origin's (behind an ingress).
    host: Option<String>,
}

/// A reply: status, headers, and the body as JSON (`Null` when empty or not JSON).
pub struct Reply {
    /// What was asked, for messages.
    pub request: String,
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Value,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {} {}", self.request, self.status, self.body)
    }
}

impl Reply {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.body
    }

    /// Asserts the reply is a problem+json with `status` and the machine `code`.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.assert_problem_shape();
        assert_eq!(self.body["code"], code, "{self:?}");
    }

    /// Asserts the reply is a 4xx problem+json (never a 5xx, never another format) and returns
    /// its status and code.
    #[track_caller]
    pub fn client_error(&self) -> (u16, String) {
        assert!(self.status.is_client_error(), "a 4xx: {self:?}");
        self.assert_problem_shape();
        (
            self.status.as_u16(),
            self.body["code"].as_str().unwrap_or_default().to_owned(),
        )
    }

    #[track_caller]
    fn assert_problem_shape(&self) {
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        assert_eq!(content_type, Some(PROBLEM_JSON), "{self:?}");
        assert_eq!(self.body["status"], self.status.as_u16(), "{self:?}");
        for member in ["type", "title", "detail", "code"] {
            assert!(self.body[member].is_string(), "problem member {member}: {self:?}");
        }
        assert!(!self.body["code"].as_str().unwrap_or_default().is_empty(), "{self:?}");
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A request under construction.
pub struct Call<'a> {
    api: &'a Api,
    method: Method,
    path: String,
    token: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl Call<'_> {
    /// With `Authorization: Bearer <token>`.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// With a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// With a JSON body.
    pub fn json(self, body: &Value) -> Self {
        self.raw("application/json", serde_json::to_vec(body).unwrap())
    }

    /// With a body of any type, sent as is.
    pub fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// Sends it.
    pub async fn send(self) -> Reply {
        let url = format!("{}{}", self.api.origin, self.path);
        let mut request = self.api.http.request(self.method.clone(), &url);
        if let Some(host) = &self.api.host {
            request = request.header(header::HOST, host);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some((content_type, body)) = self.body {
            request = request.header(header::CONTENT_TYPE, content_type).body(body);
        }
        let what = format!("{} {}", self.method, self.path);
        let response = request.send().await.unwrap_or_else(|error| panic!("{what}: {error}"));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|error| panic!("{what}: reading the body: {error}"));
        Reply {
            request: what,
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

impl Api {
    /// The API of the gateway at `origin` (`http://host:port`).
    pub fn new(origin: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            http,
            origin,
            host: None,
        }
    }

    /// The API behind the ingress at `origin`, for the virtual host `host`.
    pub fn behind_ingress(origin: String, host: &str) -> Self {
        Self {
            host: Some(host.to_owned()),
            ..Self::new(origin)
        }
    }

    /// A request to `path` under `/api/v1`.
    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        self.at(method, &format!("/api/v1{path}"))
    }

    /// A request to `path` from the root (`/readyz`).
    pub fn at(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            api: self,
            method,
            path: path.to_owned(),
            token: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Call<'_> {
        self.call(Method::POST, path).json(body)
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> Call<'_> {
        self.call(Method::PATCH, path).json(body)
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Call<'_> {
        self.call(Method::PUT, path).json(body)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// The available stock of a product.
    pub async fn stock(&self, product_id: &str) -> i64 {
        let body = self
            .get(&format!("/products/{product_id}/stock"))
            .send()
            .await
            .expect(200);
        assert_eq!(body["product_id"], product_id);
        body["stock"].as_i64().expect("stock")
    }

    /// Waits up to `timeout` for a product's stock to be `expected` (stock comes back through
    /// the queues, so after a while).
    pub async fn wait_for_stock(&self, product_id: &str, expected: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let stock = self.stock(product_id).await;
            if stock == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stock of {product_id} is {stock}, not {expected}, after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls an order every 100 ms until `done` accepts it; fails after `timeout`. Returns it.
    pub async fn wait_for_order(
        &self,
        token: &str,
        order_id: &str,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        eventually(&format!("order {order_id}: {what}"), timeout, async || {
            let order = self
                .get(&format!("/orders/{order_id}"))
                .token(token)
                .send()
                .await
                .expect(200);
            done(&order).then_some(order)
        })
        .await
    }
}

/// Runs `attempt` every 100 ms until it gives a value; fails after `timeout`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut attempt: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
