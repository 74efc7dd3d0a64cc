//! Liveness and readiness, which are different things: `/healthz` says the process is alive
//! (never touches a dependency, so a slow database cannot get the gateway restarted);
//! `/readyz` says every service behind it answers its gRPC health check, so Kubernetes only
//! routes traffic here when a request could succeed.

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
    let (user, catalog, order) = tokio::join!(
        check(upstreams.user.clone(), timeout),
        check(upstreams.catalog.clone(), timeout),
        check(upstreams.order.clone(), timeout),
    );
    let all_serving = [user, catalog, order].iter().all(|status| *status == "serving");
    let status = if all_serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if all_serving { "ready" } else { "not_ready" },
        "checks": { "user": user, "catalog": catalog, "order": order },
    });
    (status, Json(body))
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
