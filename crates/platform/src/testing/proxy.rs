//! A TCP proxy for fault-injection tests: put it between a client and a server (RabbitMQ,
//! Redis, PostgreSQL), then break the link as a network failure would and watch the client
//! recover through it:
//!
//! - [`FaultProxy::sever_all`] breaks every open connection once (new ones are accepted);
//! - [`FaultProxy::cut`] breaks every open connection and closes every new one at once until
//!   [`FaultProxy::restore`]: the server is unreachable for as long as the cut lasts
//!   ([`FaultProxy::cut_for`] does both around a pause);
//! - [`FaultProxy::delay_replies`] holds back what the server sends by a fixed time, as a slow
//!   or overloaded server would answer late.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A loopback TCP proxy to one upstream address. Stops (and drops its connections) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    link: Arc<Link>,
    acceptor: JoinHandle<()>,
}

/// The proxied connections and whether the link is cut.
#[derive(Debug, Default)]
struct Link {
    connections: Mutex<JoinSet<()>>,
    cut: AtomicBool,
    /// Milliseconds each piece of what the server sends is held back (0: none).
    reply_delay_ms: std::sync::atomic::AtomicU64,
}

impl Link {
    fn connections(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        // Nothing panics while holding the lock; if something did, the set is still fine to use.
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FaultProxy {
    /// Starts proxying connections made to [`FaultProxy::addr`] (on 127.0.0.1, a free port) to
    /// `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let link = Arc::new(Link::default());
        let acceptor = tokio::spawn(accept(listener, upstream, link.clone()));
        Ok(Self { addr, link, acceptor })
    }

    /// Starts a proxy to the server `url` names (on `default_port` when it names none), and
    /// returns it with `url` pointed at it: what a client connects with to go through it.
    pub async fn in_front_of(url: &str, default_port: u16) -> (Self, String) {
        let mut url = url::Url::parse(url).expect("a server URL");
        let host = url.host_str().expect("a server URL names its host").to_owned();
        let upstream = tokio::net::lookup_host((host, url.port().unwrap_or(default_port)))
            .await
            .expect("resolving the server's host")
            .next()
            .expect("the server's host has an address");
        let proxy = Self::start(upstream).await.expect("starting the proxy");
        url.set_host(Some(&proxy.addr.ip().to_string()))
            .expect("an IP is a host");
        url.set_port(Some(proxy.addr.port()))
            .expect("a server URL takes a port");
        (proxy, url.to_string())
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every live proxied connection (both sides) at once. New connections are still
    /// accepted.
    pub fn sever_all(&self) {
        // Aborting a task drops its two sockets, which closes both ends.
        self.link.connections().abort_all();
        tracing::debug!(proxy = %self.addr, "severed every proxied connection");
    }

    /// Cuts the link: drops every live connection, and closes every new one as soon as it is
    /// accepted, until [`FaultProxy::restore`].
    pub fn cut(&self) {
        // The flag first: the acceptor reads it under the connections' lock, so a connection
        // accepted while the cut begins is either refused or aborted below, never kept.
        self.link.cut.store(true, Ordering::SeqCst);
        self.link.connections().abort_all();
        tracing::debug!(proxy = %self.addr, "link cut");
    }

    /// Restores a cut link: new connections are proxied again.
    pub fn restore(&self) {
        self.link.cut.store(false, Ordering::SeqCst);
        tracing::debug!(proxy = %self.addr, "link restored");
    }

    /// Holds back everything the server sends on every connection, live or new, by `delay`
    /// (`Duration::ZERO` for none), in order; what the client sends is not delayed.
    pub fn delay_replies(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.link.reply_delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.link.cut.load(Ordering::SeqCst)
    }

    /// Cuts the link for `outage`, then restores it.
    pub async fn cut_for(&self, outage: Duration) {
        self.cut();
        tokio::time::sleep(outage).await;
        self.restore();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.link.connections().abort_all();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, link: Arc<Link>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "fault proxy failed to accept a connection");
                // Out of file descriptors, typically: do not spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut set = link.connections();
        // Reap finished connections so the set does not grow with every one ever made.
        while set.try_join_next().is_some() {}
        if link.cut.load(Ordering::SeqCst) {
            // Dropping the socket closes it: the client sees its connection end at once, as
            // when the server's host is unreachable and the connection is reset.
            drop(client);
            continue;
        }
        set.spawn(relay(client, peer, upstream, Arc::clone(&link)));
    }
}

async fn relay(client: TcpStream, peer: SocketAddr, upstream: SocketAddr, link: Arc<Link>) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(error) => {
            tracing::warn!(%error, %upstream, "fault proxy cannot reach its upstream");
            return;
        }
    };
    client.set_nodelay(true).ok();
    server.set_nodelay(true).ok();
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let requests = async {
        let copied = tokio::io::copy(&mut from_client, &mut to_server).await;
        to_server.shutdown().await.ok();
        copied
    };
    let replies = async {
        let mut buffer = vec![0; 64 * 1024];
        let mut copied = 0_u64;
        loop {
            let read = from_server.read(&mut buffer).await?;
            if read == 0 {
                to_client.shutdown().await.ok();
                return Ok::<_, std::io::Error>(copied);
            }
            let delay = link.reply_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            to_client.write_all(&buffer[..read]).await?;
            copied += read as u64;
        }
    };
    match tokio::try_join!(requests, replies) {
        Ok((sent, received)) => tracing::trace!(%peer, sent, received, "proxied connection ended"),
        Err(error) => tracing::trace!(%peer, %error, "proxied connection failed"),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// An echo server on loopback; returns its address.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0; 64];
                    while let Ok(read @ 1..) = socket.read(&mut buffer).await {
                        if socket.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `ping` over `stream` and reads the echo; `None` when the connection is gone.
    async fn echo(stream: &mut TcpStream) -> Option<[u8; 4]> {
        stream.write_all(b"ping").await.ok()?;
        let mut reply = [0; 4];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply)).await;
        matches!(read, Ok(Ok(4))).then_some(reply)
    }

    #[tokio::test]
    async fn a_cut_link_drops_live_connections_and_refuses_new_ones_until_restored() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut before).await, Some(*b"ping"));

        proxy.cut();
        assert!(proxy.is_cut());
        assert_eq!(
            echo(&mut before).await,
            None,
            "a live connection ends when the link is cut"
        );
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut during).await, None, "a new connection is closed while cut");

        proxy.restore();
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            echo(&mut after).await,
            Some(*b"ping"),
            "connections work again once restored"
        );
    }

    #[tokio::test]
    async fn cut_for_restores_the_link_after_the_outage() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        proxy.cut_for(Duration::from_millis(200)).await;
        assert!(!proxy.is_cut());
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut stream).await, Some(*b"ping"));
    }
}
