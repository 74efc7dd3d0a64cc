//! The one-process mesh: it starts on embedded defaults, every service answers gRPC health, the
//! gateway answers its probes, and the binary stops cleanly on SIGTERM and refuses bad
//! configuration with exit code 64.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/loopback.rs"]
mod loopback;

use std::{net::SocketAddr, time::Duration};

use shop::{Mesh, ShopConfig};
use shop_platform::config::MapEnv;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

fn loopback_config(data_dir: &std::path::Path) -> ShopConfig {
    loopback_config_with(data_dir, &[])
}

fn loopback_config_with(data_dir: &std::path::Path, more: &[(&str, &str)]) -> ShopConfig {
    let data_dir = data_dir.display().to_string();
    let env = MapEnv::from_pairs(
        [
            ("SHOP_DATA_DIR", data_dir.as_str()),
            ("SHOP_HTTP_ADDR", "127.0.0.1:0"),
            ("SHOP_USER_GRPC_ADDR", "127.0.0.1:0"),
            ("SHOP_CATALOG_GRPC_ADDR", "127.0.0.1:0"),
            ("SHOP_ORDER_GRPC_ADDR", "127.0.0.1:0"),
        ]
        .into_iter()
        .chain(more.iter().copied()),
    );
    ShopConfig::from_env(&env).unwrap()
}

/// How many established TCP connections have `port` as their local port: the connections
/// a listener on it accepted (IPv4 and IPv6, from the kernel's tables).
fn accepted_connections(port: u16) -> usize {
    const ESTABLISHED: &str = "01";
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields
                        .get(1)
                        .and_then(|local| local.rsplit(':').next())
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                    local_port == Some(port) && fields.get(3) == Some(&ESTABLISHED)
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count()
}

async fn serving(addr: SocketAddr) -> ServingStatus {
    let target = shop_platform::grpc::client::Target::parse(&format!("http://{addr}")).unwrap();
    let channel = shop_platform::grpc::client::connect(&target, &Default::default())
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let reply = client
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    reply.get_ref().status()
}

#[tokio::test]
async fn every_service_answers_health_and_the_gateway_is_ready() {
    shop_platform::testing::init_test_logging();
    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::build(&loopback_config(data.path())).await.unwrap();
    let at = mesh.addresses().clone();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(mesh.run(shutdown.clone()));

    for addr in [at.user, at.catalog, at.order] {
        assert_eq!(serving(addr).await, ServingStatus::Serving, "{addr}");
    }
    let http = reqwest::Client::new();
    let alive = http.get(format!("http://{}/healthz", at.http)).send().await.unwrap();
    assert_eq!(alive.status(), 200);
    assert!(
        alive.headers().contains_key("x-request-id"),
        "a request id is generated"
    );
    let ready = http
        .get(format!("http://{}/readyz", at.http))
        .header("x-request-id", "probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.headers()["x-request-id"],
        "probe-1",
        "a given request id is echoed"
    );
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["catalog"], "serving");

    // Each service keeps its own embedded database file.
    for name in ["user", "catalog", "order"] {
        assert!(data.path().join(format!("shop-{name}.db")).exists(), "{name} database");
    }

    stop(shutdown, running).await;
}

/// The gateway and the services call each other in process unless `SHOP_IN_PROCESS_CALLS`
/// is false: a product listing (gateway → catalog) and a health probe of every service through
/// `/readyz` open no connection to the catalog's port, unlike the network mesh's.
#[tokio::test]
async fn the_parts_call_each_other_in_process_unless_told_otherwise() {
    shop_platform::testing::init_test_logging();
    for (setting, in_process) in [(None, true), (Some("false"), false)] {
        let data = tempfile::tempdir().unwrap();
        let more: Vec<(&str, &str)> = setting
            .map(|value| ("SHOP_IN_PROCESS_CALLS", value))
            .into_iter()
            .collect();
        let mesh = Mesh::build(&loopback_config_with(data.path(), &more)).await.unwrap();
        let at = mesh.addresses().clone();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(mesh.run(shutdown.clone()));
        let http = reqwest::Client::new();
        let listed = http
            .get(format!("http://{}/api/v1/products", at.http))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
        let ready = http.get(format!("http://{}/readyz", at.http)).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        let connections = accepted_connections(at.catalog.port());
        if in_process {
            assert_eq!(connections, 0, "calls to the catalog went over TCP");
        } else {
            assert!(connections > 0, "the network mesh connects to the catalog");
        }
        stop(shutdown, running).await;
    }
}

/// Stops a running mesh and waits for it to return cleanly.
async fn stop(shutdown: CancellationToken, running: tokio::task::JoinHandle<anyhow::Result<()>>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// One service down must not take the whole API out of the load balancer: `/readyz` stays 200
/// and names what is down.
#[tokio::test]
async fn readiness_reports_down_services_without_failing() {
    shop_platform::testing::init_test_logging();
    // Nothing answers behind the gateway: three sockets bound and never listening refuse every
    // connection, and hold their ports for the whole test, so that no listener started here
    // (the gateway's own included) is handed one of them, as could happen to the ports of a
    // mesh that was started and stopped.
    let closed: Vec<tokio::net::TcpSocket> = (0..3)
        .map(|_| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            socket
        })
        .collect();
    let target = |socket: &tokio::net::TcpSocket| {
        shop_platform::grpc::client::Target::parse(&format!("http://{}", socket.local_addr().unwrap())).unwrap()
    };
    let mut gateway_config = shop_gateway::GatewayConfig::with_targets(
        "127.0.0.1:0".parse().unwrap(),
        target(&closed[0]),
        target(&closed[1]),
        target(&closed[2]),
    );
    gateway_config.readiness_timeout = Duration::from_millis(500);
    let cache = std::sync::Arc::new(shop_platform::cache::MemoryCache::new("test:"));
    let gateway = shop_gateway::Gateway::build(&gateway_config, cache).await.unwrap();
    let http_addr = gateway.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(gateway.run(shutdown.clone()));
    let alive = reqwest::get(format!("http://{http_addr}/healthz")).await.unwrap();
    assert_eq!(alive.status(), 200, "liveness does not depend on downstreams");
    let ready = reqwest::get(format!("http://{http_addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "the gateway itself can serve");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    for service in ["user", "catalog", "order"] {
        assert_eq!(body["checks"][service], "unreachable", "{body}");
    }
    assert_eq!(body["checks"]["cache"], "up", "{body}");
    // A call that needs a service that is down is 503 with Retry-After, never 500.
    let products = reqwest::get(format!("http://{http_addr}/api/v1/products"))
        .await
        .unwrap();
    assert_eq!(products.status(), 503);
    assert!(products.headers().contains_key("retry-after"));
    assert_eq!(products.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = products.json().await.unwrap();
    assert_eq!(problem["code"], "unavailable", "{problem}");
    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop(closed);
}

#[tokio::test]
async fn the_binary_prints_its_addresses_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut child = loopback::shop_command(data.path()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut grpc = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while grpc.len() < 3 {
            let line = lines.next_line().await.unwrap().expect("the binary exited early");
            if let Some(addr) = line.split("grpc://").nth(1) {
                grpc.push(addr.trim().parse::<SocketAddr>().unwrap());
            }
        }
    })
    .await
    .unwrap();
    for addr in grpc {
        assert_eq!(serving(addr).await, ServingStatus::Serving, "{addr}");
    }
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}

#[tokio::test]
async fn bad_configuration_exits_with_code_64_and_names_the_variable() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .env_clear()
        .env("SHOP_SHIP_AFTER", "tomorrow")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("SHOP_SHIP_AFTER"));
}
