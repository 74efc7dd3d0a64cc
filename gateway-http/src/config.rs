//! The gateway's configuration from the environment.

use std::{net::SocketAddr, time::Duration};

use axum::http::HeaderName;

use crate::{
    limits::{Cidr, ClientAddress},
    serve::ConnectionLimits,
};
use shop_platform::{
    config::{ConfigError, Env},
    grpc::{
        client::{ClientOptions, Target},
        mesh::{GATEWAY, Grants, MeshIdentity, MeshKey, TrustSet},
    },
};

/// Where the gateway listens, where the services are, and the edge's limits.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// `SHOP_HTTP_ADDR` [0.0.0.0:8080].
    pub http_addr: SocketAddr,
    /// `SHOP_USER_TARGET` [http://127.0.0.1:50051]; in a cluster
    /// `dns://user.shop.svc.cluster.local:50051`.
    pub user: Target,
    /// `SHOP_CATALOG_TARGET` [http://127.0.0.1:50052].
    pub catalog: Target,
    /// `SHOP_ORDER_TARGET` [http://127.0.0.1:50053].
    pub order: Target,
    /// Deadlines and discovery settings of the service channels.
    pub client: ClientOptions,
    /// How long `/readyz` waits for each service (`SHOP_READINESS_TIMEOUT` [1s]).
    pub readiness_timeout: Duration,
    /// Longest time a request may take (`SHOP_REQUEST_TIMEOUT` [15s]).
    pub request_timeout: Duration,
    /// Largest request body in bytes (`SHOP_BODY_LIMIT` [65536]).
    pub body_limit: usize,
    /// Connections open at once, time allowed for headers and bodies, requests per connection
    /// (`SHOP_HTTP_*`, see [`ConnectionLimits`]).
    pub connections: ConnectionLimits,
    /// How old the cached token-verification keys may get before they are fetched again
    /// (`SHOP_KEY_REFRESH_INTERVAL` [5m]): a key the user service retired stops verifying
    /// within it.
    pub key_refresh_interval: Duration,
    /// Requests a minute per client IP (`SHOP_RATE_LIMIT_PER_IP` [600]).
    pub rate_limit_per_ip: u32,
    /// Requests a minute per signed-in user (`SHOP_RATE_LIMIT_PER_USER` [600]).
    pub rate_limit_per_user: u32,
    /// How old a gateway's view of a client's shared request count may be for it to decide
    /// alone (`SHOP_RATE_LIMIT_VIEW_MAX_AGE` [250ms]; see [`crate::limits`]).
    pub rate_limit_view_max_age: Duration,
    /// How long the public catalog reads are answered from the gateway's memory
    /// (`SHOP_EDGE_CACHE_TTL` [1s]; `0s` or `off`: not at all).
    pub edge_cache_ttl: Duration,
    /// Most answers the edge read cache holds (`SHOP_EDGE_CACHE_ENTRIES` [10000]).
    pub edge_cache_entries: u64,
    /// Where the client's IP comes from: the header the ingress sets (`SHOP_CLIENT_IP_HEADER`
    /// [x-real-ip], or `x-forwarded-for`), believed only from peers in the trusted proxy blocks
    /// (`SHOP_TRUSTED_PROXIES`, CIDRs separated by commas or spaces [none, not even loopback]);
    /// from anyone else the client is the TCP peer.
    pub client_address: ClientAddress,
    /// Origins allowed by CORS (`SHOP_CORS_ORIGINS`, comma-separated; unset: none).
    pub cors_origins: Vec<String>,
    /// The gateway's mesh identity (`SHOP_MESH_KEY`, …): every call to a service carries a
    /// token it signs, asserting the signed-in user.
    pub mesh: MeshIdentity,
}

impl GatewayConfig {
    /// Reads the configuration; `default_addr` is the listen address when `SHOP_HTTP_ADDR` is unset.
    pub fn from_env(env: &impl Env, default_addr: &str) -> Result<Self, ConfigError> {
        let target = |key: &str, default: &str| {
            let raw = env.var(key).unwrap_or_else(|| default.to_owned());
            Target::parse(&raw).map_err(|error| ConfigError::new(key, error.to_string()))
        };
        let header = env
            .var("SHOP_CLIENT_IP_HEADER")
            .unwrap_or_else(|| "x-real-ip".to_owned());
        let header = HeaderName::try_from(header.trim().to_ascii_lowercase())
            .map_err(|_| ConfigError::new("SHOP_CLIENT_IP_HEADER", "not a header name"))?;
        let trusted_proxies = env
            .var("SHOP_TRUSTED_PROXIES")
            .unwrap_or_default()
            .split([',', ' ', '\n'])
            .filter(|cidr| !cidr.trim().is_empty())
            .map(|cidr| cidr.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ConfigError::new("SHOP_TRUSTED_PROXIES", reason))?;
        let client_address = ClientAddress {
            header,
            trusted_proxies,
        };
        let cors_origins = env
            .var("SHOP_CORS_ORIGINS")
            .map(|raw| {
                raw.split(',')
                    .map(|origin| origin.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let request_timeout = env.duration_or("SHOP_REQUEST_TIMEOUT", Duration::from_secs(15))?;
        let defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            max_connections: env.parse_or("SHOP_HTTP_MAX_CONNECTIONS", defaults.max_connections)?,
            header_timeout: env.duration_or("SHOP_HTTP_HEADER_TIMEOUT", defaults.header_timeout)?,
            body_timeout: env.duration_or("SHOP_HTTP_BODY_TIMEOUT", defaults.body_timeout)?,
            max_requests_per_connection: env.parse_or(
                "SHOP_HTTP_MAX_REQUESTS_PER_CONNECTION",
                defaults.max_requests_per_connection,
            )?,
        };
        if !(1..=1_000_000).contains(&connections.max_connections) {
            return Err(ConfigError::new("SHOP_HTTP_MAX_CONNECTIONS", "must be 1 to 1000000"));
        }
        if connections.max_requests_per_connection == 0 {
            return Err(ConfigError::new(
                "SHOP_HTTP_MAX_REQUESTS_PER_CONNECTION",
                "must be at least 1",
            ));
        }
        // A slow body must be answered 408 (the client's fault) before the request timeout
        // answers 504 (which blames the services).
        if connections.body_timeout >= request_timeout {
            return Err(ConfigError::new(
                "SHOP_HTTP_BODY_TIMEOUT",
                "must be shorter than SHOP_REQUEST_TIMEOUT",
            ));
        }
        let edge_cache_ttl = match env.var("SHOP_EDGE_CACHE_TTL") {
            Some(raw) if raw.trim().eq_ignore_ascii_case("off") => Duration::ZERO,
            _ => env.duration_or("SHOP_EDGE_CACHE_TTL", Duration::from_secs(1))?,
        };
        // Longer would hide other replicas' writes for longer than the catalog's contract says
        // stock is fresh; see docs/api.md.
        if edge_cache_ttl > Duration::from_secs(60) {
            return Err(ConfigError::new("SHOP_EDGE_CACHE_TTL", "must be at most 60s"));
        }
        Ok(Self {
            http_addr: env.addr_or("SHOP_HTTP_ADDR", default_addr)?,
            user: target("SHOP_USER_TARGET", "http://127.0.0.1:50051")?,
            catalog: target("SHOP_CATALOG_TARGET", "http://127.0.0.1:50052")?,
            order: target("SHOP_ORDER_TARGET", "http://127.0.0.1:50053")?,
            client: ClientOptions::default(),
            readiness_timeout: env.duration_or("SHOP_READINESS_TIMEOUT", Duration::from_secs(1))?,
            request_timeout,
            body_limit: env.parse_or("SHOP_BODY_LIMIT", 64 * 1024)?,
            connections,
            key_refresh_interval: env.duration_or("SHOP_KEY_REFRESH_INTERVAL", Duration::from_secs(300))?,
            rate_limit_per_ip: env.parse_or("SHOP_RATE_LIMIT_PER_IP", 600)?,
            rate_limit_per_user: env.parse_or("SHOP_RATE_LIMIT_PER_USER", 600)?,
            rate_limit_view_max_age: env.duration_or("SHOP_RATE_LIMIT_VIEW_MAX_AGE", Duration::from_millis(250))?,
            edge_cache_ttl,
            edge_cache_entries: env.parse_or("SHOP_EDGE_CACHE_ENTRIES", 10_000)?,
            client_address,
            cors_origins,
            mesh: MeshIdentity::from_env(env, GATEWAY)?,
        })
    }

    /// The defaults with the given service targets (the one-process run and tests), and a mesh
    /// key made up now (which the services must be told to trust).
    pub fn with_targets(http_addr: SocketAddr, user: Target, catalog: Target, order: Target) -> Self {
        Self {
            http_addr,
            user,
            catalog,
            order,
            client: ClientOptions::default(),
            readiness_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(15),
            body_limit: 64 * 1024,
            connections: ConnectionLimits::default(),
            key_refresh_interval: Duration::from_secs(300),
            rate_limit_per_ip: 600,
            rate_limit_per_user: 600,
            rate_limit_view_max_age: Duration::from_millis(250),
            edge_cache_ttl: Duration::from_secs(1),
            edge_cache_entries: 10_000,
            client_address: ClientAddress::default(),
            cors_origins: Vec::new(),
            mesh: MeshIdentity::new(GATEWAY, MeshKey::generate(), TrustSet::default(), &Grants::default())
                .unwrap_or_else(|_| unreachable!("the gateway's name is valid")),
        }
    }
}
