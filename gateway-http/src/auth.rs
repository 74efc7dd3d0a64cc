//! Access-token verification at the edge. Tokens are EdDSA (Ed25519) JWTs signed by the user
//! service; the gateway verifies them offline with the public keys the user service publishes
//! (`GetSigningKeys`), cached. The key set is fetched again when it is older than the refresh
//! interval (`SHOP_KEY_REFRESH_INTERVAL`, 5 min: a retired or compromised key stops verifying
//! within it, without restarting gateways), when a token names an unknown `kid` (a new key),
//! and when a signature does not verify with the cached key of its `kid` (the key behind a `kid`
//! changed) — at most once a second, so forged tokens cannot flood the user service. While the
//! user service cannot answer, the last key set keeps verifying. The algorithm is pinned:
//! `alg: none`, HMAC or anything but EdDSA is refused. A token whose signature verified is
//! remembered (by its SHA-256) until it expires or the key set is fetched again, whichever
//! comes first: a client sends the same token with every request, and checking its signature
//! each time was most of what the edge spent on an order. A verified token is then checked
//! against revocation (logout, password change) through the user service, with answers cached
//! briefly. How often each memory answers is `shop.cache.requests` (Prometheus
//! `shop_cache_requests_total`, `shop.cache` = `token` or `revocation`, `result` = `hit` or
//! `miss`, all at 0 from the start).

use std::{
    collections::HashMap,
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use opentelemetry::{KeyValue, metrics::Counter};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use shop_platform::{
    bounded::BoundedCache,
    grpc::{
        client::GrpcChannel,
        identity::{Caller, Role},
    },
};
use shop_proto::pb::user::{CheckTokenRevokedRequest, GetSigningKeysRequest, user_service_client::UserServiceClient};
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::{AppState, problem::ApiError};

/// Shortest gap between two key refreshes.
const KEY_REFRESH_GAP: Duration = Duration::from_secs(1);
/// How long a "not revoked" answer is reused. Revocation takes effect within this delay.
const NOT_REVOKED_TTL: Duration = Duration::from_secs(1);
/// Most cached revocation answers (then the stale ones go, or all; it refills on demand).
const REVOCATION_CACHE_CAP: usize = 100_000;
/// Most remembered verified tokens (a token's claims are a few hundred bytes).
const VERIFIED_CACHE_CAP: usize = 100_000;

/// Whether a cached answer still holds: a revocation is final; "not revoked" holds for
/// [`NOT_REVOKED_TTL`].
fn usable((revoked, at): &(bool, Instant)) -> bool {
    *revoked || at.elapsed() < NOT_REVOKED_TTL
}

/// `shop.cache.requests` of the edge's caches (`token`, `revocation`), every result at 0 from
/// the first use.
fn cache_lookups() -> &'static Counter<u64> {
    static LOOKUPS: OnceLock<Counter<u64>> = OnceLock::new();
    LOOKUPS.get_or_init(|| {
        let counter = shop_platform::telemetry::metrics::meter()
            .u64_counter("shop.cache.requests")
            .with_unit("{request}")
            .with_description("Lookups in a cache, by cache and result (hit, miss).")
            .build();
        for cache in [TOKENS, REVOCATIONS] {
            for result in [HIT, MISS] {
                counter.add(0, &cache_labels(cache, result));
            }
        }
        counter
    })
}

/// The cache of verified tokens.
const TOKENS: &str = "token";
/// The cache of revocation answers.
const REVOCATIONS: &str = "revocation";
/// Answered from memory.
const HIT: &str = "hit";
/// Verified (a signature checked) or asked of the user service.
const MISS: &str = "miss";

fn cache_labels(cache: &'static str, result: &'static str) -> [KeyValue; 2] {
    [KeyValue::new("shop.cache", cache), KeyValue::new("result", result)]
}

/// Counts a lookup in one of the edge's caches.
fn count_lookup(cache: &'static str, result: &'static str) {
    cache_lookups().add(1, &cache_labels(cache, result));
}

/// Seconds since the Unix epoch, as a token's `exp` counts them.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

/// The claims of a shop access token.
#[derive(Clone, Debug, Deserialize)]
struct Claims {
    sub: Uuid,
    role: String,
    jti: String,
    exp: i64,
    #[serde(default)]
    sid: Option<Uuid>,
}

/// A verified access token: the caller it names, and what signing out must revoke.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The caller the token names.
    pub caller: Caller,
    /// The token's id (`jti` claim).
    pub token_id: String,
    /// When the token expires (`exp` claim), in seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Verifies access tokens.
#[derive(Debug)]
pub struct Authenticator {
    users: UserServiceClient<GrpcChannel>,
    keys: RwLock<KeySet>,
    /// When the key set was last asked for (successfully, or failing with a key set in hand).
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    /// How old the key set may get before it is fetched again.
    key_max_age: Duration,
    /// Answers by token id: revoked (kept), or not revoked and when that was answered.
    revocations: BoundedCache<String, (bool, Instant)>,
    /// Tokens whose signature verified, by SHA-256 of the token: their claims, and the key
    /// set (its generation) that verified them.
    verified: BoundedCache<[u8; 32], (Claims, u64)>,
}

/// The user service's verification keys by `kid`, and when they were fetched.
#[derive(Debug, Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    /// Counts the fetches: a token verified under an earlier generation is verified again.
    generation: u64,
}

/// The verified caller of a request; extracting it answers 401 when the token is missing or bad.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Caller);

/// The verified caller if the request has a token; anonymous otherwise (a bad token is still 401).
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<Caller>);

/// The verified token itself, for the handlers that need more than the caller (logout revokes
/// the token by id until it expires); 401 like [`AuthUser`].
#[derive(Debug, Clone)]
pub struct AuthToken(pub VerifiedToken);

impl Authenticator {
    /// An authenticator asking the user service behind `channel` for keys (again once they are
    /// `key_max_age` old) and revocations.
    pub fn new(channel: GrpcChannel, key_max_age: Duration) -> Self {
        // Every result exists from the start, at 0.
        let _ = cache_lookups();
        Self {
            users: UserServiceClient::new(channel),
            keys: RwLock::default(),
            last_refresh: tokio::sync::Mutex::default(),
            key_max_age,
            revocations: BoundedCache::new(REVOCATION_CACHE_CAP),
            verified: BoundedCache::new(VERIFIED_CACHE_CAP),
        }
    }

    /// Verifies `token` and returns the caller it names.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        Ok(self.verify_token(token).await?.caller)
    }

    /// Verifies `token` and returns it with the caller it names.
    pub async fn verify_token(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let invalid = || ApiError::unauthorized("invalid_token", "the access token is not valid");
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = match self.remembered(&digest).await {
            Some(claims) => {
                count_lookup(TOKENS, HIT);
                claims
            }
            None => {
                count_lookup(TOKENS, MISS);
                let (claims, generation) = self.verify_signature(token).await?;
                self.verified
                    .insert(digest, (claims.clone(), generation), |(claims, _)| {
                        claims.exp > unix_now()
                    });
                claims
            }
        };
        let role: Role = claims.role.parse().map_err(|_| invalid())?;
        if self.is_revoked(&claims.jti, claims.sid).await? {
            return Err(ApiError::unauthorized(
                "token_revoked",
                "the access token has been revoked",
            ));
        }
        Ok(VerifiedToken {
            caller: Caller::new(claims.sub, role, claims.sid),
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// The claims of a token verified before, if it has not expired and the key set that
    /// verified it is still the current one (and not due for a fetch: then the token is
    /// verified again, against the keys as they are now).
    async fn remembered(&self, digest: &[u8; 32]) -> Option<Claims> {
        let generation = {
            let set = self.keys.read().await;
            let fresh = set.fetched_at.is_some_and(|at| at.elapsed() < self.key_max_age);
            if !fresh {
                return None;
            }
            set.generation
        };
        let now = unix_now();
        self.verified
            .get(digest, |(claims, verified_by)| {
                *verified_by == generation && claims.exp > now
            })
            .map(|(claims, _)| claims)
    }

    /// Checks `token`'s header, signature and expiry; its claims, and the generation of the key
    /// set that verified it.
    async fn verify_signature(&self, token: &str) -> Result<(Claims, u64), ApiError> {
        let invalid = || ApiError::unauthorized("invalid_token", "the access token is not valid");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid());
        }
        let kid = header.kid.ok_or_else(invalid)?;
        let (key, mut generation) = self.key(&kid).await?.ok_or_else(invalid)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let mut decoded = jsonwebtoken::decode::<Claims>(token, &key, &validation);
        if decoded
            .as_ref()
            .is_err_and(|error| *error.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature)
            && self.refresh().await?
            && let Some((fresh, fetched)) = self.key_now(&kid).await
        {
            generation = fetched;
            decoded = jsonwebtoken::decode::<Claims>(token, &fresh, &validation);
        }
        let data = decoded.map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                ApiError::unauthorized("token_expired", "the access token has expired")
            }
            _ => invalid(),
        })?;
        Ok((data.claims, generation))
    }

    /// The key `kid` with the generation of its key set, fetching the key set first when it is
    /// stale or lacks `kid`.
    async fn key(&self, kid: &str) -> Result<Option<(DecodingKey, u64)>, ApiError> {
        {
            let set = self.keys.read().await;
            let fresh = set.fetched_at.is_some_and(|at| at.elapsed() < self.key_max_age);
            if fresh && let Some(key) = set.keys.get(kid) {
                return Ok(Some((key.clone(), set.generation)));
            }
        }
        self.refresh().await?;
        Ok(self.key_now(kid).await)
    }

    /// The key `kid` in the key set as it is, with the set's generation.
    async fn key_now(&self, kid: &str) -> Option<(DecodingKey, u64)> {
        let set = self.keys.read().await;
        set.keys.get(kid).map(|key| (key.clone(), set.generation))
    }

    /// Fetches the key set again unless it was asked for less than [`KEY_REFRESH_GAP`] ago
    /// (requests that waited for another's fetch use its result); true when it was fetched.
    /// A failure is an error only while there is no key set at all: otherwise the last one keeps
    /// verifying (and the next attempt waits the gap).
    async fn refresh(&self) -> Result<bool, ApiError> {
        // One refresh at a time: requests arriving while the keys are fetched (right after a
        // start, say) wait for that fetch instead of finding no key and answering 401.
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < KEY_REFRESH_GAP) {
            return Ok(false);
        }
        match self.users.clone().get_signing_keys(GetSigningKeysRequest {}).await {
            Ok(reply) => {
                let keys = reply
                    .into_inner()
                    .keys
                    .into_iter()
                    .filter(|key| key.algorithm == "EdDSA" && key.public_key.len() == 32)
                    .map(|key| (key.kid, DecodingKey::from_ed_der(&key.public_key)))
                    .collect();
                let now = Instant::now();
                let mut set = self.keys.write().await;
                *set = KeySet {
                    keys,
                    fetched_at: Some(now),
                    generation: set.generation + 1,
                };
                drop(set);
                *last = Some(now);
                Ok(true)
            }
            Err(status) if self.keys.read().await.fetched_at.is_some() => {
                tracing::warn!(%status, "refreshing the token keys failed; the last ones stay in use");
                *last = Some(Instant::now());
                Ok(false)
            }
            // Nothing to verify with yet: the request fails (503), and the next one tries again.
            Err(status) => Err(status.into()),
        }
    }

    async fn is_revoked(&self, jti: &str, session: Option<Uuid>) -> Result<bool, ApiError> {
        if let Some((revoked, _)) = self.revocations.get(jti, usable) {
            count_lookup(REVOCATIONS, HIT);
            return Ok(revoked);
        }
        count_lookup(REVOCATIONS, MISS);
        let request = CheckTokenRevokedRequest {
            jti: jti.to_owned(),
            session_id: session.map(|id| id.to_string()).unwrap_or_default(),
        };
        let revoked = self
            .users
            .clone()
            .check_token_revoked(request)
            .await?
            .into_inner()
            .revoked;
        self.remember(jti, revoked);
        Ok(revoked)
    }

    /// Records that the token `jti` was revoked through this gateway (logout, account deletion),
    /// so the gateway refuses it at once instead of when its cached answer expires.
    pub fn mark_revoked(&self, jti: &str) {
        self.remember(jti, true);
    }

    /// Forgets every cached "not revoked" answer (revocations stay): after a change made
    /// through this gateway that ends sessions (a role change, a password change), the tokens it
    /// ended are refused here at once instead of up to [`NOT_REVOKED_TTL`] later. Other
    /// gateway replicas refuse them within that delay.
    pub fn forget_live_answers(&self) {
        self.revocations.retain(|(revoked, _)| *revoked);
    }

    fn remember(&self, jti: &str, revoked: bool) {
        self.revocations
            .insert(jti.to_owned(), (revoked, Instant::now()), usable);
    }
}

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid_token", "malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "use Authorization: Bearer <access_token>",
        )),
    }
}

/// The request's verified token, if it has one. Verified (and counted by the per-user limit)
/// once per request: the result is kept in the request's extensions for other extractors.
async fn verified(parts: &mut Parts, state: &AppState) -> Result<Option<VerifiedToken>, ApiError> {
    if let Some(token) = parts.extensions.get::<VerifiedToken>() {
        return Ok(Some(token.clone()));
    }
    let Some(token) = bearer(parts)?.map(str::to_owned) else {
        return Ok(None);
    };
    let token = state.auth.verify_token(&token).await?;
    shop_platform::telemetry::record_end_user(&token.caller.user_id);
    state.limits.check_user(token.caller.user_id).await?;
    parts.extensions.insert(token.clone());
    Ok(Some(token))
}

fn missing_token() -> ApiError {
    ApiError::unauthorized(
        "missing_token",
        "this endpoint needs Authorization: Bearer <access_token>",
    )
}

impl FromRequestParts<AppState> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(verified(parts, state).await?.map(|token| token.caller)))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = verified(parts, state).await?.ok_or_else(missing_token)?;
        Ok(Self(token.caller))
    }
}

impl FromRequestParts<AppState> for AuthToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(verified(parts, state).await?.ok_or_else(missing_token)?))
    }
}
