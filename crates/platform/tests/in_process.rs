//! A server offered in process is called without the network by the channels of its own
//! process that target its address, through the same layers as over the network: mesh
//! authentication, the call slots, the request timeout; the caller's request extensions do not
//! cross; a call made before it serves waits for it; once it shuts down, calls go to the
//! network again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shop_platform::{
    grpc::{
        client::{ClientOptions, GrpcChannel, Target, connect},
        mesh::{CATALOG, GATEWAY, MeshIdentity, MeshSettings},
        server::{GrpcLimits, GrpcServerBuilder},
    },
    testing::{
        doubles::StockCatalog,
        server::{Served, serve},
    },
};
use shop_proto::pb::catalog::{self as catalog, catalog_service_client::CatalogServiceClient};
use tonic::{Code, Request, Status};

/// Something only the caller's memory holds.
#[derive(Clone, Debug)]
struct CallersOwn;

/// A catalog whose `GetStock` waits as many milliseconds as the product id says, then answers
/// how the call reached it: the peer address (a network call has one), and whether the
/// caller's [`CallersOwn`] arrived.
async fn how_called(request: Request<catalog::GetStockRequest>) -> Result<catalog::GetStockResponse, Status> {
    let millis: u64 = request.get_ref().product_id.parse().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    let peer = request.remote_addr().map_or("no peer", |_| "a peer");
    let extension = request
        .extensions()
        .get::<CallersOwn>()
        .map_or("", |_| ", the caller's extension");
    Ok(catalog::GetStockResponse {
        product_id: format!("{peer}{extension}"),
        stock: 7,
    })
}

struct Offered {
    mesh: std::collections::BTreeMap<String, MeshIdentity>,
    served: Served,
}

async fn start(in_process: bool, request_timeout: Duration, limits: GrpcLimits) -> Offered {
    shop_platform::testing::init_test_logging();
    let mesh = MeshIdentity::ephemeral_mesh(&[GATEWAY, CATALOG], &MeshSettings::default()).unwrap();
    let served = serve(mesh[CATALOG].clone(), |builder| {
        builder
            .in_process(in_process)
            .request_timeout(request_timeout)
            .limits(limits)
            .add_service(StockCatalog::server(how_called))
    })
    .await;
    Offered { mesh, served }
}

impl Offered {
    async fn unsigned(&self) -> GrpcChannel {
        let options = ClientOptions {
            request_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        };
        connect(&self.served.target(), &options).await.unwrap()
    }

    async fn channel(&self) -> GrpcChannel {
        self.unsigned().await.signed_by(&self.mesh[GATEWAY], CATALOG)
    }
}

/// GetStock of `millis` through `channel`, the caller's extension attached.
async fn get_stock(channel: GrpcChannel, millis: u64) -> Result<String, Status> {
    let mut request = Request::new(catalog::GetStockRequest {
        product_id: millis.to_string(),
    });
    request.extensions_mut().insert(CallersOwn);
    let reply = CatalogServiceClient::new(channel).get_stock(request).await?;
    Ok(reply.into_inner().product_id)
}

#[tokio::test]
async fn a_server_offered_in_process_is_called_without_the_network_and_sees_only_what_it_carries() {
    let offered = start(true, Duration::from_secs(5), GrpcLimits::default()).await;
    assert_eq!(get_stock(offered.channel().await, 0).await.unwrap(), "no peer");
    let network = start(false, Duration::from_secs(5), GrpcLimits::default()).await;
    assert_eq!(get_stock(network.channel().await, 0).await.unwrap(), "a peer");
}

/// The parts of one process are built (bound) before any serves: a call made in between waits
/// for its server, as a connection waits in the listener's backlog, and is then answered in
/// process, never over the network.
#[tokio::test]
async fn a_call_before_the_server_serves_waits_for_it_in_process() {
    let mesh = MeshIdentity::ephemeral_mesh(&[GATEWAY, CATALOG], &MeshSettings::default()).unwrap();
    let server = GrpcServerBuilder::new("127.0.0.1:0".parse().unwrap(), mesh[CATALOG].clone())
        .in_process(true)
        .add_service(StockCatalog::server(how_called))
        .bind()
        .await
        .unwrap();
    let target = Target::parse(&format!("http://{}", server.local_addr())).unwrap();
    let channel = connect(&target, &ClientOptions::default())
        .await
        .unwrap()
        .signed_by(&mesh[GATEWAY], CATALOG);
    let early = tokio::spawn(get_stock(channel, 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!early.is_finished(), "answered before the server serves");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(server.serve(shutdown.clone()));
    assert_eq!(early.await.unwrap().unwrap(), "no peer");
    shutdown.cancel();
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn in_process_calls_are_authenticated_as_network_calls() {
    let offered = start(true, Duration::from_secs(5), GrpcLimits::default()).await;
    let refused = get_stock(offered.unsigned().await, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // A key the server does not trust proves nothing either.
    let stranger = MeshIdentity::ephemeral_mesh(&[GATEWAY, CATALOG], &MeshSettings::default()).unwrap();
    let forged = offered.unsigned().await.signed_by(&stranger[GATEWAY], CATALOG);
    let refused = get_stock(forged, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

#[tokio::test]
async fn in_process_calls_take_call_slots_and_are_cut_off_at_the_request_timeout() {
    let limits = GrpcLimits {
        max_concurrent_calls: 2,
        ..GrpcLimits::default()
    };
    let offered = start(true, Duration::from_millis(300), limits).await;
    let channel = offered.channel().await;
    let first = tokio::spawn(get_stock(channel.clone(), 1_000));
    let second = tokio::spawn(get_stock(channel.clone(), 1_000));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = get_stock(channel.clone(), 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(refused.metadata().get("x-shop-error-code").unwrap(), "overloaded");
    for slow in [first, second] {
        let cut = slow.await.unwrap().unwrap_err();
        assert_eq!(cut.code(), Code::Cancelled, "{cut:?}");
        assert!(cut.message().to_lowercase().contains("timeout"), "{cut:?}");
    }
    assert_eq!(get_stock(channel, 0).await.unwrap(), "no peer");
}

#[tokio::test]
async fn once_shut_down_a_server_is_no_longer_called_in_process() {
    let offered = start(true, Duration::from_secs(5), GrpcLimits::default()).await;
    let channel = offered.channel().await;
    let in_flight = tokio::spawn(get_stock(channel.clone(), 400));
    tokio::time::sleep(Duration::from_millis(100)).await;
    offered.served.shutdown.cancel();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        "no peer",
        "the call in flight completes during the drain"
    );
    tokio::time::timeout(Duration::from_secs(5), offered.served.served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Not answered in process any more: the call goes to the closed port.
    let refused = get_stock(channel, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
}
