//! Calls between the parts of one process, without the network.
//!
//! The one-process `shop` binary runs the gateway and every service side by side. Over loopback
//! TCP, each call between them costs HTTP/2 framing and a socket write and read on both sides,
//! and wakes each connection's task: about a fifth of the process's time in a flash sale
//! (docs/benchmarks.md). A server offered in process
//! ([`GrpcServerBuilder::in_process`](super::server::GrpcServerBuilder::in_process)) registers
//! its call stack here, under the address it bound, from the moment it is bound; a call that
//! arrives before the server serves waits for it, as a connection waits in the listener's
//! backlog, so the calls between parts started together never take the network. A
//! [`GrpcChannel`](super::client::GrpcChannel) whose target is that one address hands each call
//! to the stack directly. The call passes the same layers as over the network: mesh
//! authentication and grants, admission (the call slots, the database gate), the server span,
//! the metrics, and the server's timeout. Only what the network would carry crosses: the
//! method, path, headers (the mesh token, the trace context, the deadline) and the encoded
//! message; never the caller's request extensions.
//!
//! When the server stops (its shutdown signal), or is dropped without serving, it is removed,
//! and the calls that follow go to the network as they would have, finding the listener closed
//! or draining.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{LazyLock, PoisonError, RwLock},
    time::Duration,
};

use http::Uri;
use tokio::sync::watch;
use tonic::body::Body;
use tower::{ServiceExt as _, util::BoxCloneSyncService};

/// A server's whole call stack, as a service.
pub(crate) type CallStack = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// The servers of this process offered in process, by the address they bound.
static SERVERS: LazyLock<RwLock<HashMap<SocketAddr, Offered>>> = LazyLock::new(Default::default);

/// A server offered in process.
#[derive(Clone)]
struct Offered {
    stack: CallStack,
    /// The longest a call may take (a caller's shorter `grpc-timeout` wins), as the network
    /// server bounds it.
    request_timeout: Duration,
    /// Becomes true once the server serves; calls wait for it.
    serving: watch::Receiver<bool>,
}

/// Keeps a server offered in process; dropping it withdraws the offer.
#[derive(Debug)]
pub(crate) struct Offer {
    addr: SocketAddr,
    serving: watch::Sender<bool>,
}

impl Offer {
    /// The server serves: the calls waiting for it go on, and the next ones do not wait.
    pub(crate) fn serving(&self) {
        self.serving.send_replace(true);
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        SERVERS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.addr);
    }
}

/// Offers the server bound at `addr` to the clients of this process until the returned
/// [`Offer`] is dropped; its calls wait until [`Offer::serving`].
pub(crate) fn offer(addr: SocketAddr, stack: CallStack, request_timeout: Duration) -> Offer {
    let (serving, waiting) = watch::channel(false);
    SERVERS.write().unwrap_or_else(PoisonError::into_inner).insert(
        addr,
        Offered {
            stack,
            request_timeout,
            serving: waiting,
        },
    );
    Offer { addr, serving }
}

/// The one address a target of one `http://ip:port` endpoint names, the only kind of target
/// that can reach a server offered in process (a name or a list may lead elsewhere).
pub(crate) fn single_address(uris: &[Uri]) -> Option<SocketAddr> {
    match uris {
        [uri] => uri.authority()?.as_str().parse().ok(),
        _ => None,
    }
}

/// Calls the server offered at `addr`, if one is, within what is left of the caller's
/// deadline (or the server's own timeout, if shorter); `Err` hands the request back untouched
/// for the network.
pub(crate) async fn call(
    addr: SocketAddr,
    request: http::Request<Body>,
    caller_timeout: Duration,
) -> Result<http::Response<Body>, http::Request<Body>> {
    let offered = SERVERS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&addr)
        .cloned();
    let Some(offered) = offered else {
        return Err(request);
    };
    let (mut parts, body) = request.into_parts();
    // What a network server sees: no extension of the caller's request.
    parts.extensions = http::Extensions::new();
    let request = http::Request::from_parts(parts, body);
    let timeout = caller_timeout.min(offered.request_timeout);
    let mut serving = offered.serving;
    let answered = tokio::time::timeout(timeout, async move {
        if serving.wait_for(|serving| *serving).await.is_err() {
            // Withdrawn before it ever served: as a listener closed with the call in its backlog.
            return tonic::Status::unavailable("the server stopped before serving").into_http();
        }
        match offered.stack.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    })
    .await;
    // What tonic's server answers when its timeout expires.
    Ok(answered.unwrap_or_else(|_elapsed| tonic::Status::cancelled(tonic::TimeoutExpired(()).to_string()).into_http()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_a_target_of_one_socket_address_can_be_in_process() {
        let uris = |list: &[&str]| list.iter().map(|uri| uri.parse::<Uri>().unwrap()).collect::<Vec<_>>();
        assert_eq!(
            single_address(&uris(&["http://127.0.0.1:50052"])),
            Some("127.0.0.1:50052".parse().unwrap())
        );
        assert_eq!(
            single_address(&uris(&["http://[::1]:50052"])),
            Some("[::1]:50052".parse().unwrap())
        );
        assert_eq!(single_address(&uris(&["http://catalog:50052"])), None);
        assert_eq!(
            single_address(&uris(&["http://127.0.0.1:1", "http://127.0.0.1:2"])),
            None
        );
    }
}
