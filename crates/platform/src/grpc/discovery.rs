//! Endpoint discovery for balanced gRPC channels: a background task that keeps the balancer's
//! endpoint set in step with DNS (a Kubernetes headless Service answers one A/AAAA record per
//! ready pod) and ejects addresses that refuse connections.
//!
//! Each round the task:
//! 1. resolves the name (or takes the fixed list of a static target);
//! 2. probes, with a plain TCP connect, the addresses it previously found unreachable, and — when
//!    a call just failed to connect ([`Nudge`]) — every address, because the failed call cannot
//!    tell which endpoint it went to;
//! 3. sends `Change::Insert` for new reachable addresses and `Change::Remove` for addresses that
//!    left DNS or stopped accepting connections.
//!
//! A failed or empty lookup keeps the last good set (a DNS hiccup must not empty the balancer).
//! When every resolved address is unreachable they all stay in the balancer, so calls fail fast
//! with `Unavailable` instead of waiting for their deadline. The task runs until every clone of
//! the channel is dropped (the balancer then drops the receiving end of the change channel) or
//! the optional cancellation token fires.

use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};

use hickory_resolver::{
    Resolver, TokioResolver,
    config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
};
use http::Uri;
use tokio::{
    net::TcpStream,
    sync::{Notify, mpsc::Sender, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, channel::Change};

/// Responses cached by the resolver: a channel looks up one name, so a handful is plenty.
const RESOLVER_CACHE_SIZE: u64 = 16;

/// Shortest gap between two rounds triggered by failed calls, so a burst of failures (or a
/// backend set that is entirely down) costs a few lookups per second, not one per call.
const MIN_NUDGE_GAP: Duration = Duration::from_millis(50);

/// Where the addresses come from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A name resolved again every refresh.
    Dns {
        resolver: Box<TokioResolver>,
        host: String,
        port: u16,
    },
    /// A fixed list (a static target): only the reachability probes apply.
    Fixed(Vec<Uri>),
}

impl Source {
    /// The current address set, as endpoint URIs (the balancer keys).
    async fn resolve(&self) -> Result<HashSet<Uri>, String> {
        match self {
            Self::Fixed(uris) => Ok(uris.iter().cloned().collect()),
            Self::Dns { resolver, host, port } => {
                let lookup = resolver
                    .lookup_ip(host.as_str())
                    .await
                    .map_err(|error| error.to_string())?;
                let mut uris = HashSet::new();
                for ip in lookup.iter() {
                    let addr = SocketAddr::new(ip, *port);
                    match Uri::try_from(format!("http://{addr}")) {
                        Ok(uri) => {
                            uris.insert(uri);
                        }
                        // Cannot happen for a socket address; skip rather than fail the round.
                        Err(error) => tracing::warn!(%addr, %error, "unusable address"),
                    }
                }
                Ok(uris)
            }
        }
    }
}

/// Builds a resolver that asks `nameserver` (or the servers of resolv.conf), caches answers no
/// longer than `max_ttl` and never reads the hosts file for an explicit nameserver.
pub(crate) fn build_resolver(nameserver: Option<SocketAddr>, max_ttl: Duration) -> Result<TokioResolver, NetError> {
    let mut builder = match nameserver {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let config =
                ResolverConfig::from_name_servers(vec![NameServerConfig::new(server.ip(), true, vec![udp, tcp])]);
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    options.cache_size = RESOLVER_CACHE_SIZE;
    // Capping the TTL at the refresh period makes every refresh ask the server, so a pod added
    // to the Service is seen on the next refresh whatever TTL the records carry.
    options.positive_max_ttl = Some(max_ttl);
    options.negative_max_ttl = Some(max_ttl);
    // A lookup should not outlive a refresh period by much: while it hangs (DNS down), the task
    // cannot react to failed calls.
    options.timeout = max_ttl.clamp(Duration::from_secs(1), Duration::from_secs(5));
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    if nameserver.is_some() {
        options.use_hosts_file = ResolveHosts::Never;
    }
    builder.build()
}

/// How each discovered endpoint is configured.
#[derive(Debug, Clone)]
pub(crate) struct EndpointSettings {
    pub(crate) connect_timeout: Duration,
    /// HTTP/2 PING interval and ack timeout, to notice a peer that vanished without a FIN.
    pub(crate) keep_alive: Option<(Duration, Duration)>,
    /// `:authority` sent on every call (the logical name, not the pod IP), for proxies and logs.
    pub(crate) origin: Option<Uri>,
}

impl EndpointSettings {
    fn endpoint(&self, uri: Uri) -> Endpoint {
        let mut endpoint = Endpoint::from(uri)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some((interval, timeout)) = self.keep_alive {
            endpoint = endpoint.http2_keep_alive_interval(interval).keep_alive_timeout(timeout);
        }
        if let Some(origin) = &self.origin {
            endpoint = endpoint.origin(origin.clone());
        }
        endpoint
    }
}

/// Asks the discovery task for an immediate round with reachability probes of every address:
/// signalled by the channel when a call could not connect.
#[derive(Debug, Clone, Default)]
pub(crate) struct Nudge(Arc<Notify>);

impl Nudge {
    pub(crate) fn notify(&self) {
        // `notify_one` stores a permit: a burst of failures coalesces into one round.
        self.0.notify_one();
    }

    async fn notified(&self) {
        self.0.notified().await;
    }
}

/// Everything the discovery task needs.
#[derive(Debug)]
pub(crate) struct Discovery {
    /// Name of the target, for logs.
    pub(crate) target: String,
    pub(crate) source: Source,
    pub(crate) settings: EndpointSettings,
    pub(crate) refresh_interval: Duration,
    pub(crate) changes: Sender<Change<Uri, Endpoint>>,
    pub(crate) nudge: Nudge,
    pub(crate) shutdown: Option<CancellationToken>,
}

impl Discovery {
    /// Spawns the task; `first_round` fires once the first round has been applied.
    pub(crate) fn spawn(self, first_round: oneshot::Sender<()>) -> JoinHandle<()> {
        tokio::spawn(self.run(first_round))
    }

    async fn run(self, first_round: oneshot::Sender<()>) {
        let shutdown = self.shutdown.clone().unwrap_or_default();
        let changes = self.changes.clone();
        tokio::select! {
            () = self.refresh_loop(first_round) => {}
            // Every channel clone is gone: the balancer dropped the receiver.
            () = changes.closed() => {
                tracing::debug!("gRPC channel dropped: endpoint discovery stops");
            }
            () = shutdown.cancelled() => {
                tracing::debug!("endpoint discovery cancelled");
            }
        }
    }

    async fn refresh_loop(&self, first_round: oneshot::Sender<()>) {
        let mut state = State::default();
        let mut first_round = Some(first_round);
        let mut probe_all = false;
        loop {
            let started = Instant::now();
            if !self.round(&mut state, probe_all).await {
                return;
            }
            if let Some(done) = first_round.take() {
                // Nobody waiting any more is fine.
                let _ = done.send(());
            }
            probe_all = tokio::select! {
                () = tokio::time::sleep_until(started + self.refresh_interval) => false,
                () = self.nudge.notified() => {
                    tokio::time::sleep_until(started + MIN_NUDGE_GAP).await;
                    true
                }
            };
        }
    }

    /// One resolution round. Returns `false` once the balancer is gone.
    async fn round(&self, state: &mut State, probe_all: bool) -> bool {
        let target = self.target.as_str();
        let resolved = match self.source.resolve().await {
            Ok(resolved) if resolved.is_empty() => {
                tracing::warn!(
                    target,
                    endpoints = state.inserted.len(),
                    "name resolved to no address: keeping the last known endpoints"
                );
                return true;
            }
            Ok(resolved) => resolved,
            Err(error) => {
                tracing::warn!(
                    target,
                    %error,
                    endpoints = state.inserted.len(),
                    "name resolution failed: keeping the last known endpoints"
                );
                return true;
            }
        };

        let to_probe: Vec<Uri> = resolved
            .iter()
            .filter(|uri| probe_all || state.unreachable.contains(*uri))
            .cloned()
            .collect();
        let probes = futures::future::join_all(
            to_probe
                .into_iter()
                .map(|uri| async { (self.reachable(&uri).await, uri) }),
        )
        .await;
        let unreachable: HashSet<Uri> = probes
            .into_iter()
            .filter_map(|(reachable, uri)| (!reachable).then_some(uri))
            .collect();

        let mut wanted: HashSet<Uri> = resolved.difference(&unreachable).cloned().collect();
        if wanted.is_empty() {
            // Nothing answers: keep everything so calls fail fast instead of waiting for an
            // endpoint until their deadline.
            tracing::warn!(target, "no resolved address accepts connections: keeping all of them");
            wanted = resolved.clone();
        }

        let removed: Vec<Uri> = state
            .inserted
            .iter()
            .filter(|uri| !wanted.contains(*uri))
            .cloned()
            .collect();
        for uri in removed {
            let reason = if resolved.contains(&uri) {
                "unreachable"
            } else {
                "no longer resolved"
            };
            tracing::info!(target, endpoint = %uri, reason, "removing gRPC endpoint");
            if self.changes.send(Change::Remove(uri.clone())).await.is_err() {
                return false;
            }
            state.inserted.remove(&uri);
        }
        for uri in &wanted {
            if state.inserted.contains(uri) {
                continue;
            }
            tracing::info!(target, endpoint = %uri, "adding gRPC endpoint");
            let endpoint = self.settings.endpoint(uri.clone());
            if self.changes.send(Change::Insert(uri.clone(), endpoint)).await.is_err() {
                return false;
            }
            state.inserted.insert(uri.clone());
        }
        if !unreachable.is_empty() {
            tracing::debug!(target, ?unreachable, "addresses refusing connections");
        }
        state.unreachable = unreachable;
        true
    }

    /// Whether `uri` accepts a TCP connection within the connect timeout.
    async fn reachable(&self, uri: &Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let connect = TcpStream::connect(authority.as_str());
        match tokio::time::timeout(self.settings.connect_timeout, connect).await {
            Ok(Ok(_stream)) => true,
            Ok(Err(error)) => {
                tracing::debug!(endpoint = %uri, %error, "probe: connection failed");
                false
            }
            Err(_) => {
                tracing::debug!(endpoint = %uri, "probe: connect timed out");
                false
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Endpoints currently in the balancer.
    inserted: HashSet<Uri>,
    /// Resolved addresses that refused the last probe: probed again every round.
    unreachable: HashSet<Uri>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tonic::transport::Channel;

    /// Discovery of one fixed (unreachable) address, refreshed every 20 ms.
    fn fixed_discovery(changes: Sender<Change<Uri, Endpoint>>, shutdown: Option<CancellationToken>) -> Discovery {
        Discovery {
            target: "static://127.0.0.1:1".to_owned(),
            source: Source::Fixed(vec![Uri::from_static("http://127.0.0.1:1")]),
            settings: EndpointSettings {
                connect_timeout: Duration::from_millis(200),
                keep_alive: None,
                origin: None,
            },
            refresh_interval: Duration::from_millis(20),
            changes,
            nudge: Nudge::default(),
            shutdown,
        }
    }

    #[tokio::test]
    async fn stops_when_the_channel_is_dropped() {
        let (channel, changes) = Channel::balance_channel::<Uri>(16);
        let discovery = fixed_discovery(changes, None);
        let (done, first) = oneshot::channel();
        let task = discovery.spawn(done);
        first.await.unwrap();
        // Let a few rounds run, then drop the only channel handle.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished());
        drop(channel);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("discovery task did not stop")
            .unwrap();
    }

    #[tokio::test]
    async fn stops_when_cancelled() {
        let (_channel, changes) = Channel::balance_channel::<Uri>(16);
        let token = CancellationToken::new();
        let discovery = fixed_discovery(changes, Some(token.clone()));
        let (done, _first) = oneshot::channel();
        let task = discovery.spawn(done);
        token.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("discovery task did not stop")
            .unwrap();
    }
}
