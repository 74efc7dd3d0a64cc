//! Rate limits per client IP and per signed-in user, counted in the shared cache (Redis in
//! production) so they hold across every gateway replica: a fixed one-minute window per key,
//! 429 with `Retry-After` (the window's remaining seconds) beyond the limit. If the cache is
//! down the gateway fails open (logs, serves): an outage of the limiter must not become an
//! outage of the shop, and the services keep limits of their own on what is costly (sign-in
//! failures, verification mails), which fail closed with 503.

use std::{convert::Infallible, net::IpAddr, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{Extensions, HeaderMap, HeaderName, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use shop_platform::cache::Cache;
use uuid::Uuid;

use crate::{AppState, problem::ApiError};

/// The counting window.
const WINDOW: Duration = Duration::from_secs(60);

/// Limits and where to count them.
#[derive(Debug)]
pub struct RateLimits {
    cache: Arc<dyn Cache>,
    per_ip: i64,
    per_user: i64,
    client_ip_header: Option<HeaderName>,
}

impl RateLimits {
    /// Limits of `per_ip` and `per_user` requests a minute; the client IP comes from
    /// `client_ip_header` (set by the ingress, e.g. `x-real-ip`) or else the TCP peer.
    pub fn new(cache: Arc<dyn Cache>, per_ip: u32, per_user: u32, client_ip_header: Option<HeaderName>) -> Self {
        Self {
            cache,
            per_ip: per_ip.into(),
            per_user: per_user.into(),
            client_ip_header,
        }
    }

    /// Whether the cache the limits are counted in answers (reported by `/readyz`).
    pub async fn cache_ready(&self) -> bool {
        self.cache.ready().await
    }

    /// Counts a request of `user`.
    pub async fn check_user(&self, user: Uuid) -> Result<(), ApiError> {
        self.hit(&format!("rate:user:{user}"), self.per_user).await
    }

    async fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        self.hit(&format!("rate:ip:{ip}"), self.per_ip).await
    }

    async fn hit(&self, key: &str, limit: i64) -> Result<(), ApiError> {
        match self.cache.increment(key, WINDOW).await {
            Ok(count) if count > limit => {
                let left = self.cache.time_to_live(key).await.ok().flatten().unwrap_or(WINDOW);
                Err(ApiError::rate_limited(left.as_secs_f64().ceil() as u64))
            }
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, "rate limiter unavailable; serving without it");
                Ok(())
            }
        }
    }

    /// The client's IP address: from the configured header if any, else the TCP peer.
    pub fn client_ip(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        if let Some(header) = &self.client_ip_header {
            // With several proxies the last hop (the ingress) appended the address it saw.
            let raw = headers.get(header)?.to_str().ok()?;
            return raw.rsplit(',').next()?.trim().parse().ok();
        }
        extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
    }
}

/// The client's IP address as the rate limits see it (`None` when unknown), for handlers that
/// pass it on to a service with limits of its own.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(state.limits.client_ip(&parts.headers, &parts.extensions)))
    }
}

/// Middleware: the per-IP limit, before any work is done.
pub async fn limit_by_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = state.limits.client_ip(request.headers(), request.extensions());
    match state.limits.check_ip(ip).await {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}
