//! A gRPC server of the test's own on a free loopback port, served in the background: what
//! the tests of the platform's gRPC machinery call.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::grpc::{client::Target, mesh::MeshIdentity, server::GrpcServerBuilder};

/// A server [`serve`] started.
#[derive(Debug)]
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Cancelling it shuts the server down (in-flight calls finish first).
    pub shutdown: CancellationToken,
    /// The background task: what `serve` returned once the server stopped.
    pub served: JoinHandle<anyhow::Result<()>>,
}

impl Served {
    /// The server as a client's target.
    pub fn target(&self) -> Target {
        Target::parse(&format!("http://{}", self.addr)).expect("a loopback address is a target")
    }
}

/// Binds a server for mesh member `identity` on a free loopback port, with what `configure`
/// adds (services, limits, a timeout), and serves it in the background.
pub async fn serve(identity: MeshIdentity, configure: impl FnOnce(GrpcServerBuilder) -> GrpcServerBuilder) -> Served {
    let builder = GrpcServerBuilder::new("127.0.0.1:0".parse().expect("a loopback address"), identity);
    let server = configure(builder).bind().await.expect("binding a loopback port");
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(server.serve(shutdown.clone()));
    Served { addr, shutdown, served }
}
