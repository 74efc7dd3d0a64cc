//! The one HTTP client every request of a run goes through: HTTP/1.1 with keep-alive, a pool
//! as large as the connections, Nagle off, so the generator never waits for a connection or a
//! handshake; and the measured request, timed until its whole body is read.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use reqwest::{Method, RequestBuilder};
use tokio::time::Instant;

use crate::stats::{Outcome, Recorder};

/// How long one measured request may take before it counts as an error (longer than the
/// gateway's own 15 s request timeout, so its answer is seen).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared client for `connections` connections at once.
pub fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(connections.max(1) * 2)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")
}

/// A request builder for `method` on `origin` + `path`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    http: reqwest::Client,
    origin: String,
}

impl Endpoint {
    /// The server at `origin` (`http://host:port`), through `http`.
    pub fn new(http: reqwest::Client, origin: &str) -> Self {
        Self {
            http,
            origin: origin.trim_end_matches('/').to_owned(),
        }
    }

    /// `method origin+path`, with a bearer `token` when given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.origin));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Sends `request`, reads its whole body, and records it as `operation` with its latency from
/// `started`; the status and body, or `None` when no answer came.
pub async fn measure(
    recorder: &Recorder,
    operation: &'static str,
    request: RequestBuilder,
    started: Instant,
) -> Option<(u16, Bytes)> {
    let answer = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.bytes().await?))
    }
    .await
    .ok();
    let outcome = answer
        .as_ref()
        .map_or(Outcome::Error, |(status, _)| Outcome::Status(*status));
    recorder.record(operation, started.elapsed(), outcome);
    answer
}
