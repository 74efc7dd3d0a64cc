//! The gRPC server builder: health and reflection come with every server, the request timeout
//! is enforced, and a shutdown lets in-flight calls finish before `serve` returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, time::Duration};

use shop_platform::grpc::{
    client::{ClientOptions, GrpcChannel, Target, connect},
    mesh::{CATALOG, GATEWAY, MeshIdentity, MeshSettings, OPERATOR},
    server::GrpcLimits,
};
use shop_platform::testing::{
    doubles::StockCatalog,
    server::{Served, serve},
};
use shop_proto::pb::catalog::{self as catalog, catalog_service_client::CatalogServiceClient};
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A catalog whose `GetStock` takes as many milliseconds as the product id says.
async fn slow_stock(request: Request<catalog::GetStockRequest>) -> Result<catalog::GetStockResponse, Status> {
    let millis: u64 = request
        .get_ref()
        .product_id
        .parse()
        .map_err(|_| Status::invalid_argument("millis"))?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Ok(catalog::GetStockResponse {
        product_id: request.into_inner().product_id,
        stock: 7,
    })
}

struct Running {
    mesh: std::collections::BTreeMap<String, MeshIdentity>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(request_timeout: Duration) -> Running {
    start_with(request_timeout, GrpcLimits::default()).await
}

async fn start_with(request_timeout: Duration, limits: GrpcLimits) -> Running {
    shop_platform::testing::init_test_logging();
    let mesh = MeshIdentity::ephemeral_mesh(&[GATEWAY, CATALOG, OPERATOR], &MeshSettings::default()).unwrap();
    let Served { addr, shutdown, served } = serve(mesh[CATALOG].clone(), |builder| {
        builder
            .request_timeout(request_timeout)
            .limits(limits)
            .add_service(StockCatalog::server(slow_stock))
            .reflection(shop_proto::FILE_DESCRIPTOR_SET)
    })
    .await;
    Running {
        mesh,
        addr,
        shutdown,
        served,
    }
}

impl Running {
    /// A channel to the server, signing its calls as mesh member `member`.
    async fn channel(&self, member: &str) -> GrpcChannel {
        let options = ClientOptions {
            request_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        };
        connect(&Target::parse(&format!("http://{}", self.addr)).unwrap(), &options)
            .await
            .unwrap()
            .signed_by(&self.mesh[member], CATALOG)
    }
}

fn stock_request(millis: u64) -> catalog::GetStockRequest {
    catalog::GetStockRequest {
        product_id: millis.to_string(),
    }
}

#[tokio::test]
async fn every_service_and_the_server_report_serving() {
    let server = start(Duration::from_secs(5)).await;
    // Probes have no mesh key: health answers without a token.
    let unsigned = connect(
        &Target::parse(&format!("http://{}", server.addr)).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let mut health = HealthClient::new(unsigned);
    for service in ["", "shop.catalog.v1.CatalogService"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(reply.get_ref().status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    server.shutdown.cancel();
    server.served.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_the_services_to_operators_only() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let server = start(Duration::from_secs(5)).await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    // The gateway is a trusted member, but reflection is not in its grants.
    let mut refused = ServerReflectionClient::new(server.channel(GATEWAY).await);
    let status = refused
        .server_reflection_info(tokio_stream::iter([request.clone()]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let mut reflection = ServerReflectionClient::new(server.channel(OPERATOR).await);
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|service| service.name).collect();
    for expected in ["shop.catalog.v1.CatalogService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from {names:?}"
        );
    }
    server.shutdown.cancel();
}

#[tokio::test]
async fn calls_longer_than_the_request_timeout_are_cut_off() {
    let server = start(Duration::from_millis(200)).await;
    let mut client = CatalogServiceClient::new(server.channel(GATEWAY).await);
    assert_eq!(client.get_stock(stock_request(10)).await.unwrap().get_ref().stock, 7);
    let started = std::time::Instant::now();
    let status = client.get_stock(stock_request(3_000)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "cut off near the timeout");
    assert!(status.message().to_lowercase().contains("timeout"), "{status:?}");
    server.shutdown.cancel();
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish() {
    let server = start(Duration::from_secs(5)).await;
    let mut client = CatalogServiceClient::new(server.channel(GATEWAY).await);
    let in_flight = tokio::spawn(async move { client.get_stock(stock_request(600)).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.shutdown.cancel();
    let reply = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes during the drain");
    assert_eq!(reply.get_ref().stock, 7);
    tokio::time::timeout(Duration::from_secs(5), server.served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Once drained, the port no longer accepts connections.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_refused_at_once_and_health_still_answers() {
    let limits = GrpcLimits {
        max_concurrent_calls: 2,
        ..GrpcLimits::default()
    };
    let server = start_with(Duration::from_secs(5), limits).await;
    let channel = server.channel(GATEWAY).await;
    // Two slow calls take both slots.
    let slow =
        |channel: GrpcChannel| async move { CatalogServiceClient::new(channel).get_stock(stock_request(800)).await };
    let first = tokio::spawn(slow(channel.clone()));
    let second = tokio::spawn(slow(channel.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A third is refused at once, retryably, with its machine code; health is not a call.
    let started = std::time::Instant::now();
    let refused = CatalogServiceClient::new(channel.clone())
        .get_stock(stock_request(0))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(refused.metadata().get("x-shop-error-code").unwrap(), "overloaded");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let health = HealthClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .check(HealthCheckRequest { service: String::new() })
    .await
    .unwrap();
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);

    // Once they are done, calls are served again.
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let answer = CatalogServiceClient::new(channel)
        .get_stock(stock_request(0))
        .await
        .unwrap();
    assert_eq!(answer.into_inner().stock, 7);
}

#[tokio::test]
async fn a_message_beyond_the_decoding_limit_is_refused() {
    let server = start(Duration::from_secs(5)).await;
    // 5 MiB in one field: past the 4 MiB every generated server decodes (docs/security.md), so
    // the call is refused before the service sees it.
    let huge = catalog::GetStockRequest {
        product_id: "7".repeat(5 * 1024 * 1024),
    };
    let refused = CatalogServiceClient::new(server.channel(GATEWAY).await)
        .get_stock(huge)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("too large"), "{refused:?}");
}

/// Every connection a gRPC server accepts has `TCP_NODELAY`: tonic writes a unary response's
/// trailers after its message, often as a write of their own, and without it that write waits
/// for the client's delayed ACK of the first (40 ms; one order in ten placed on an idle shop
/// took 48 ms instead of 5, docs/benchmarks.md).
#[tokio::test]
async fn accepted_connections_send_small_writes_at_once() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = shop_platform::grpc::server::accepting(listener);
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accepted = incoming.next().await.unwrap().unwrap();
    assert!(accepted.nodelay().unwrap());
}
