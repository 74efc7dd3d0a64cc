//! A TCP proxy for fault-injection tests: put it between a client and a server (RabbitMQ,
//! Redis, PostgreSQL), then [`FaultProxy::sever_all`] to break every connection at once, as a
//! network failure would, and watch the client reconnect through it; or [`FaultProxy::cut`] the
//! link for as long as the test needs (connections severed and new ones refused, as when the
//! server is down) and [`FaultProxy::restore`] it.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A loopback TCP proxy to one upstream address. Stops (and drops its connections) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    connections: Arc<Mutex<JoinSet<()>>>,
    /// The accept loop; `None` while the link is cut.
    acceptor: Mutex<Option<JoinHandle<()>>>,
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
            upstream,
            connections,
            acceptor: Mutex::new(Some(acceptor)),
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

    /// Cuts the link: stops listening (new connections are refused, as by a server that is
    /// down) and severs every live connection. Until [`FaultProxy::restore`].
    pub async fn cut(&self) {
        let acceptor = lock(&self.acceptor).take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            // Awaited so the listener is closed (and its port free again) when this returns.
            let _ = acceptor.await;
        }
        self.sever_all();
        tracing::debug!(proxy = %self.addr, "link cut");
    }

    /// Listens again on the same address after [`FaultProxy::cut`]; does nothing if the link
    /// is not cut.
    pub fn restore(&self) -> std::io::Result<()> {
        let mut acceptor = lock(&self.acceptor);
        if acceptor.is_none() {
            let socket = TcpSocket::new_v4()?;
            // The severed connections linger in TIME_WAIT on this port.
            socket.set_reuseaddr(true)?;
            socket.bind(self.addr)?;
            let listener = socket.listen(1024)?;
            *acceptor = Some(tokio::spawn(accept(listener, self.upstream, self.connections.clone())));
            tracing::debug!(proxy = %self.addr, "link restored");
        }
        Ok(())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(acceptor) = lock(&self.acceptor).take() {
            acceptor.abort();
        }
        lock(&self.connections).abort_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding the lock; if something did, the value is still fine to use.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
