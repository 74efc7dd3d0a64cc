//! The gateway's HTTP server: hyper's HTTP/1.1 connections with the limits a public edge needs,
//! so that idle or slow clients cannot hold what everyone else needs (file descriptors,
//! memory, the readiness probe's way in).
//!
//! - **Connections:** at most [`ConnectionLimits::max_connections`] are open at once. At the cap
//!   the gateway stops accepting (new connections wait in the kernel's backlog) instead of
//!   running out of file descriptors, which would fail every request including `/healthz`.
//! - **Header timeout:** a client has [`ConnectionLimits::header_timeout`] to send a request's
//!   headers, counted from when the gateway starts waiting for them. That is also the longest
//!   a kept-alive connection may sit idle between requests: a slow-loris client (one header
//!   byte at a time) and a silent one are both closed.
//! - **Requests per connection:** after [`ConnectionLimits::max_requests_per_connection`]
//!   requests the connection is closed once the last response is sent (`Connection: close`), so one
//!   client cannot pin itself to one replica forever and connection state is renewed.
//! - **Body timeout:** the body is read within [`ConnectionLimits::body_timeout`] or the request
//!   is answered 408 (see [`crate::edge::read_body_within`]).
//!
//! HTTP/1.1 only: the ingress terminates TLS and HTTP/2 and speaks HTTP/1.1 to the gateway.
//! (hyper's protocol detection for cleartext HTTP/2 waits for a client's first bytes without
//! a deadline, which would reopen the door the header timeout closes.)

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderValue, header},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How many connections, how long for headers and bodies, and how many requests each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (`SHOP_HTTP_MAX_CONNECTIONS` [10000]); keep it below the
    /// process's file descriptor limit.
    pub max_connections: usize,
    /// Time to send a request's headers, and to start the next request on a kept-alive
    /// connection (`SHOP_HTTP_HEADER_TIMEOUT` [10s]).
    pub header_timeout: Duration,
    /// Time to send a request's body (`SHOP_HTTP_BODY_TIMEOUT` [10s]); 408 beyond it.
    pub body_timeout: Duration,
    /// Requests served on one connection before it is closed
    /// (`SHOP_HTTP_MAX_REQUESTS_PER_CONNECTION` [1000]).
    pub max_requests_per_connection: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_requests_per_connection: 1_000,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets every open
/// connection finish its request in flight and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    // One slot per open connection; each connection's task holds its slot until it ends.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.context("the connection slots closed")?,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was accepted: wait a
                    // little rather than spin, as the error is likely to repeat at once.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Responses are written whole; Nagle would only delay their last segment.
        let _ = stream.set_nodelay(true);
        let served = Arc::new(AtomicU64::new(0));
        let service = {
            let router = router.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= limits.max_requests_per_connection;
                let router = router.clone();
                async move {
                    let Ok(mut response) = router.oneshot(request.map(Body::new)).await;
                    if last {
                        // hyper closes the connection once this response is written.
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%peer, %error, "connection ended");
                        }
                        break;
                    }
                    () = shutdown.cancelled(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    // Every slot back means every connection has ended.
    let every_slot = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _all = slots
        .acquire_many(every_slot)
        .await
        .context("the connection slots closed")?;
    Ok(())
}
