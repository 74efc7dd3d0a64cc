//! Liveness and readiness, which are different things: `/healthz` says the process is alive
//! (never touches a dependency, so a slow database cannot get the gateway restarted);
//! `/readyz` says the gateway itself can serve, and reports how each service behind it is.
//!
//! Readiness deliberately does not depend on the services: one service down must not take the
//! whole public API out of the load balancer. While the catalog is down, signed-in customers
//! still see their orders; while ordering is down, browsing still works; the calls that need a
//! down service get 503 problem+json with `Retry-After` (see [`crate::problem`]). Nor does it
//! depend on the cache: the gateway uses it only for rate limits, which fail open. So `/readyz`
//! answers 200 whenever the gateway answers at all, with `status: "ready"` when everything
//! behind it is up and `"degraded"` (naming what is not) otherwise.

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde_json::{Value, json};
use shop_platform::grpc::client::GrpcChannel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::AppState;

/// The health routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(alive)).route("/readyz", get(ready))
}

async fn alive() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let upstreams = &state.upstreams;
    let timeout = state.readiness_timeout;
    let (user, catalog, order, cache) = tokio::join!(
        check(upstreams.user.clone(), timeout),
        check(upstreams.catalog.clone(), timeout),
        check(upstreams.order.clone(), timeout),
        async {
            match tokio::time::timeout(timeout, state.limits.cache_ready()).await {
                Ok(true) => "up",
                Ok(false) | Err(_) => "down",
            }
        },
    );
    let all_up = [user, catalog, order].iter().all(|status| *status == "serving") && cache == "up";
    let body = json!({
        "status": if all_up { "ready" } else { "degraded" },
        "checks": { "user": user, "catalog": catalog, "order": order, "cache": cache },
    });
    (StatusCode::OK, Json(body))
}

/// One service's health, as a word: `serving`, `not_serving`, `unreachable`, `timeout`.
async fn check(channel: GrpcChannel, timeout: std::time::Duration) -> &'static str {
    let mut client = HealthClient::new(channel);
    let call = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(reply)) if reply.get_ref().status() == ServingStatus::Serving => "serving",
        Ok(Ok(_)) => "not_serving",
        Ok(Err(_)) => "unreachable",
        Err(_) => "timeout",
    }
}
