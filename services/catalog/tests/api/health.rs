//! Health that tells the truth: with its PostgreSQL link cut, the catalog reports NOT_SERVING
//! (the server and its named service) and answers calls UNAVAILABLE at once, while `liveness`
//! stays SERVING; once the link is back it is SERVING and answers again. `GET /metrics` says
//! the same in `shop_service_serving`.

use std::time::{Duration, Instant};

use shop_platform::{
    grpc::error::machine_code,
    health::LIVENESS,
    testing::{self, metrics::Scraper, proxy::FaultProxy},
};
use shop_proto::pb::catalog::ListProductsRequest;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::helpers::{Broker, spawn_app_on};

const CATALOG: &str = "shop.catalog.v1.CatalogService";

async fn status(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Polls the overall status until it is `wanted`; fails after `within`.
async fn wait_for(health: &mut HealthClient<Channel>, wanted: ServingStatus, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if status(health, "").await == wanted {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not {wanted:?} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The catalog behind a PostgreSQL link that the test can cut.
async fn spawn_behind_proxy() -> (crate::helpers::TestApp, FaultProxy) {
    testing::init_test_logging();
    let (proxy, through_proxy) = FaultProxy::in_front_of(&testing::create_postgres_database().await, 5432).await;
    let app = spawn_app_on(Broker::Memory, &[("DATABASE_URL", through_proxy.as_str())]).await;
    (app, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_not_serving_and_unavailable_until_it_ends() {
    let (app, proxy) = spawn_behind_proxy().await;
    app.product(3).await;

    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut client = app.client().await;
    for service in ["", CATALOG, LIVENESS] {
        assert_eq!(
            status(&mut health, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let listed = client.list_products(ListProductsRequest::default()).await.unwrap();
    assert_eq!(listed.into_inner().products.len(), 1);

    proxy.cut();
    let noticed = wait_for(&mut health, ServingStatus::NotServing, Duration::from_secs(15)).await;
    eprintln!("NOT_SERVING {noticed:?} after the cut");
    assert_eq!(status(&mut health, CATALOG).await, ServingStatus::NotServing);
    assert_eq!(
        status(&mut health, LIVENESS).await,
        ServingStatus::Serving,
        "a database outage is no reason to restart the process"
    );
    // Calls are refused at once, as UNAVAILABLE (503 at the gateway), not INTERNAL, and
    // without waiting for the pool's acquire timeout.
    let asked = Instant::now();
    let refused = client.list_products(ListProductsRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(machine_code(&refused), Some("unavailable"));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "answered in {:?}",
        asked.elapsed()
    );

    proxy.restore();
    let recovered = wait_for(&mut health, ServingStatus::Serving, Duration::from_secs(30)).await;
    eprintln!("SERVING {recovered:?} after the restore");
    assert_eq!(status(&mut health, CATALOG).await, ServingStatus::Serving);
    let listed = client.list_products(ListProductsRequest::default()).await.unwrap();
    assert_eq!(listed.into_inner().products.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_gauge_follows_the_health_status() {
    let metrics = Scraper::install();
    let (app, proxy) = spawn_behind_proxy().await;
    let serving = ["shop_service=\"catalog\""];
    metrics
        .wait_for("shop_service_serving", &serving, |value| value == 1.0)
        .await;

    proxy.cut();
    metrics
        .wait_for("shop_service_serving", &serving, |value| value == 0.0)
        .await;
    proxy.restore();
    metrics
        .wait_for("shop_service_serving", &serving, |value| value == 1.0)
        .await;
    app.stop().await;
    assert_eq!(
        metrics.value("shop_service_serving", &serving).await,
        Some(0.0),
        "a stopped service does not serve"
    );
}
