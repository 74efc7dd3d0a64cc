//! A TCP proxy for fault-injection tests: put it between a client and a server (RabbitMQ,
//! Redis, PostgreSQL), then [`FaultProxy::sever_all`] to break every connection at once, as a
//! network failure would, and watch the client reconnect through it.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A loopback TCP proxy to one upstream address. Stops (and drops its connections) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    connections: Arc<Mutex<JoinSet<()>>>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts proxying connections made to [`FaultProxy::addr`] (on 127.0.0.1, a free port) to
    /// `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let acceptor = tokio::spawn(accept(listener, upstream, connections.clone()));
        Ok(Self {
            addr,
            connections,
            acceptor,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every live proxied connection (both sides) at once. New connections are still
    /// accepted.
    pub fn sever_all(&self) {
        let mut connections = lock(&self.connections);
        // Aborting a task drops its two sockets, which closes both ends.
        connections.abort_all();
        tracing::debug!(proxy = %self.addr, "severed every proxied connection");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        lock(&self.connections).abort_all();
    }
}

fn lock(connections: &Mutex<JoinSet<()>>) -> std::sync::MutexGuard<'_, JoinSet<()>> {
    // Nothing panics while holding the lock; if something did, the set is still fine to use.
    connections.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept(listener: TcpListener, upstream: SocketAddr, connections: Arc<Mutex<JoinSet<()>>>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "fault proxy failed to accept a connection");
                continue;
            }
        };
        let mut set = lock(&connections);
        // Reap finished connections so the set does not grow with every one ever made.
        while set.try_join_next().is_some() {}
        set.spawn(relay(client, peer, upstream));
    }
}

async fn relay(mut client: TcpStream, peer: SocketAddr, upstream: SocketAddr) {
    let mut server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(error) => {
            tracing::warn!(%error, %upstream, "fault proxy cannot reach its upstream");
            return;
        }
    };
    client.set_nodelay(true).ok();
    server.set_nodelay(true).ok();
    match tokio::io::copy_bidirectional(&mut client, &mut server).await {
        Ok((sent, received)) => tracing::trace!(%peer, sent, received, "proxied connection ended"),
        Err(error) => tracing::trace!(%peer, %error, "proxied connection failed"),
    }
}
