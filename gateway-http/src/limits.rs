//! Rate limits per client IP and per signed-in user, counted in the shared cache (Redis in
//! production) so they hold across every gateway replica: a fixed one-minute window per key,
//! 429 with `Retry-After` (the window's remaining seconds) beyond the limit. The counting is
//! [`WindowCounters`]: decided in the process, sent to Redis in batches (no Redis transaction
//! per request), counted in Redis first near the limit, and a client over it is refused without
//! asking Redis. The overshoot across replicas is bounded as that module says. If the cache is
//! down the gateway fails open (logs, serves): an outage of the limiter must not become an
//! outage of the shop, and the services keep limits of their own on what is costly (sign-in
//! failures, verification mails), which fail closed with 503.
//!
//! The client is the TCP peer, unless the peer is one of the configured trusted proxies (the
//! ingress controller): then the client IP header the proxy sets is believed, read from the
//! right past every trusted hop. Anyone else's header is ignored, so no client picks its own
//! bucket. IPv6 clients are counted per /64 (one host usually holds a whole /64).
//!
//! Every 429 the gateway answers is counted in `shop.rate_limit.rejections` (Prometheus
//! `shop_rate_limit_rejections_total`) by `shop.rate_limit`: `ip` and `user` for these limits,
//! `service` for a limit of a service behind the gateway (sign-in failures, verification mails)
//! passed on as 429. Every series starts at 0.

use std::{
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{Extensions, HeaderMap, HeaderName, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use opentelemetry::{KeyValue, metrics::Counter};
use shop_platform::cache::{
    Cache,
    counters::{Verdict, WindowCounters},
};
use uuid::Uuid;

use crate::{AppState, problem::ApiError};

/// The counting window.
const WINDOW: Duration = Duration::from_secs(60);

/// A limit whose refusals are counted (`shop.rate_limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Requests per client IP.
    Ip,
    /// Requests per signed-in user.
    User,
    /// A service's own limit, passed on by the gateway.
    Service,
}

impl Limit {
    const ALL: [Self; 3] = [Self::Ip, Self::User, Self::Service];

    fn label(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::User => "user",
            Self::Service => "service",
        }
    }
}

fn rejections() -> &'static Counter<u64> {
    static REJECTIONS: OnceLock<Counter<u64>> = OnceLock::new();
    REJECTIONS.get_or_init(|| {
        let counter = shop_platform::telemetry::metrics::meter()
            .u64_counter("shop.rate_limit.rejections")
            .with_unit("{request}")
            .with_description("Requests the gateway answered 429, by the limit that refused them.")
            .build();
        for limit in Limit::ALL {
            counter.add(0, &[KeyValue::new("shop.rate_limit", limit.label())]);
        }
        counter
    })
}

/// Counts a request refused by `limit`.
pub fn count_rejection(limit: Limit) {
    rejections().add(1, &[KeyValue::new("shop.rate_limit", limit.label())]);
}

/// An address block, `10.0.0.0/8` or `fd00::/8` (a bare address is a block of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = raw
            .trim()
            .split_once('/')
            .map_or((raw.trim(), None), |(a, p)| (a, Some(p)));
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{raw:?} is not an address block"))?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("{raw:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

/// `ip`, with an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The rate-limit bucket of a client: its IPv4 address, or its IPv6 /64.
pub fn bucket_of(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{network}/64")
        }
    }
}

/// Where the client's address comes from: the header trusted proxies set, and which peers are
/// trusted proxies.
#[derive(Clone, Debug)]
pub struct ClientAddress {
    /// The header (`x-real-ip`, `x-forwarded-for`).
    pub header: HeaderName,
    /// The proxies whose header is believed (none by default: the peer is the client).
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for ClientAddress {
    /// `x-real-ip`, from nobody.
    fn default() -> Self {
        Self {
            header: HeaderName::from_static("x-real-ip"),
            trusted_proxies: Vec::new(),
        }
    }
}

impl ClientAddress {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client of a request from `peer`: the peer itself unless it is a trusted proxy; then
    /// the address in the header, read from the right (each proxy appends the address it saw)
    /// past every trusted proxy. A header that is missing or unreadable leaves the peer.
    pub fn resolve(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all(&self.header)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let Ok(hop) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(hop);
            if !self.trusted(client) {
                break;
            }
        }
        client
    }
}

/// Limits and where to count them.
#[derive(Debug)]
pub struct RateLimits {
    counters: WindowCounters,
    per_ip: i64,
    per_user: i64,
    client_address: ClientAddress,
}

impl RateLimits {
    /// Limits of `per_ip` and `per_user` requests a minute counted in `cache`, a gateway
    /// deciding alone on a view of the shared counts at most `view_max_age` old; the client IP
    /// is found as `client_address` says.
    pub fn new(
        cache: Arc<dyn Cache>,
        per_ip: u32,
        per_user: u32,
        view_max_age: Duration,
        client_address: ClientAddress,
    ) -> Self {
        // Every series exists from the start (at 0), so the first refusal is an increase.
        let _ = rejections();
        Self {
            counters: WindowCounters::new(cache, WINDOW, view_max_age),
            per_ip: per_ip.into(),
            per_user: per_user.into(),
            client_address,
        }
    }

    /// Whether the cache the limits are counted in answers (reported by `/readyz`).
    pub async fn cache_ready(&self) -> bool {
        self.counters.cache().ready().await
    }

    /// Counts a request of `user`.
    pub async fn check_user(&self, user: Uuid) -> Result<(), ApiError> {
        self.hit(&format!("rate:user:{user}"), self.per_user, Limit::User).await
    }

    /// Counts a request of the client at `ip`. A request without a peer address (only an
    /// in-process caller, never a TCP connection) is not counted, rather than sharing a bucket
    /// with every other such request.
    pub async fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match ip {
            Some(ip) => {
                self.hit(&format!("rate:ip:{}", bucket_of(ip)), self.per_ip, Limit::Ip)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn hit(&self, key: &str, limit: i64, which: Limit) -> Result<(), ApiError> {
        match self.counters.hit(key, limit).await {
            Verdict::Within | Verdict::Unchecked => Ok(()),
            Verdict::Over { retry_after } => {
                count_rejection(which);
                Err(ApiError::rate_limited(retry_after.as_secs_f64().ceil() as u64))
            }
        }
    }

    /// The client's IP address: the TCP peer, or what a trusted proxy says (see the module).
    pub fn client_ip(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = extensions.get::<ConnectInfo<std::net::SocketAddr>>()?.0.ip();
        Some(self.client_address.resolve(headers, peer))
    }
}

/// The client's IP address as the rate limits see it (`None` when unknown), for handlers that
/// pass it on to a service with limits of its own.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The client as the services' own limits should count it (its rate-limit bucket).
    pub fn bucket(&self) -> Option<String> {
        self.0.map(bucket_of)
    }

    /// Tells the service called who the client is (`x-shop-client-ip`), for its own limits
    /// (verification mails, password checks).
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(value) = self.bucket().and_then(|bucket| bucket.parse().ok()) {
            request
                .metadata_mut()
                .insert(crate::routes::accounts::CLIENT_IP_METADATA, value);
        }
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(state.limits.client_ip(&parts.headers, &parts.extensions)))
    }
}

/// Middleware: the per-IP limit, before any work is done.
pub async fn limit_by_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = state.limits.client_ip(request.headers(), request.extensions());
    match state.limits.check_ip(ip).await {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn resolve(trusted: &[&str], header: &[&str], peer: &str) -> String {
        let address = ClientAddress {
            header: HeaderName::from_static("x-forwarded-for"),
            trusted_proxies: trusted.iter().map(|cidr| cidr.parse().unwrap()).collect(),
        };
        let mut headers = HeaderMap::new();
        for value in header {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        address.resolve(&headers, peer.parse().unwrap()).to_string()
    }

    #[test]
    fn the_header_counts_only_from_trusted_proxies() {
        // No proxies configured (the default), not even loopback: the peer is the client.
        assert_eq!(resolve(&[], &["203.0.113.9"], "127.0.0.1"), "127.0.0.1");
        assert_eq!(resolve(&["10.0.0.0/8"], &["203.0.113.9"], "192.0.2.1"), "192.0.2.1");
        assert_eq!(resolve(&["10.0.0.0/8"], &["203.0.113.9"], "10.1.2.3"), "203.0.113.9");
        // What the client wrote itself, left of the trusted hops, is skipped past only as far
        // as the first untrusted address.
        assert_eq!(
            resolve(&["10.0.0.0/8"], &["1.1.1.1, 203.0.113.9, 10.0.0.5"], "10.1.2.3"),
            "203.0.113.9"
        );
        assert_eq!(
            resolve(&["10.0.0.0/8"], &["1.1.1.1", "198.51.100.2"], "10.1.2.3"),
            "198.51.100.2"
        );
        // No or unreadable header from a proxy: the proxy.
        assert_eq!(resolve(&["10.0.0.0/8"], &[], "10.1.2.3"), "10.1.2.3");
        assert_eq!(resolve(&["10.0.0.0/8"], &["junk"], "10.1.2.3"), "10.1.2.3");
        assert_eq!(resolve(&["fd00::/8"], &["2001:db8::1"], "fd00::7"), "2001:db8::1");
    }

    #[test]
    fn blocks_parse_strictly() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        let single: Cidr = "192.0.2.1".parse().unwrap();
        assert!(single.contains("192.0.2.1".parse().unwrap()));
        assert!(!single.contains("192.0.2.2".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(bucket_of("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(
            bucket_of("2001:db8:1:2:ffff::9".parse().unwrap()),
            bucket_of("2001:db8:1:2::1".parse().unwrap())
        );
        assert_eq!(bucket_of("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
