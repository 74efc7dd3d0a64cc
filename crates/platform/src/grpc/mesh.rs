//! Service identity inside the mesh: who is calling, proven on every call.
//!
//! Every mesh member (the gateway, each service, an internal team's client) holds an Ed25519
//! signing key and signs, for every call it makes, a short-lived **mesh token**: an EdDSA JWT
//! sent in the `x-shop-mesh-token` metadata entry, with
//! - `iss`: the caller's name (`gateway`, `order`, `reports`, …),
//! - `aud`: the service called (`user`, `catalog`, `order`): a token for one service is refused
//!   by the others,
//! - `mth`: the method called (`shop.order.v1.OrderService/ListOrders`): a token is refused for
//!   any other method,
//! - `iat`/`exp`: seconds of life ([`DEFAULT_TOKEN_TTL`]; a verifier refuses any token that
//!   lives longer than [`MAX_TOKEN_TTL`], whoever minted it),
//! - the end user the call is made for, if any: `usr` (id, role, session) when the caller may
//!   assert users (only the gateway, by default), or `fwd`: the token the caller itself received
//!   for that user, so a service acting for a user proves that a user-asserting member sent it
//!   that user within the last seconds (and cannot invent one).
//!
//! Every service verifies the token in its gRPC server ([`MeshIdentity::verify`], applied once
//! for every method by the server builder): signed by a key its **trust set** lists for the
//! issuer, addressed to it, not expired, and allowed by its **grants** (which caller may call
//! which methods, and which callers may assert end users). Anything else is UNAUTHENTICATED
//! (no proof) or PERMISSION_DENIED (proof, but no grant). The `x-shop-user-*` metadata of
//! earlier versions is never read. Health checks need no token (probes have none).
//!
//! Signing and verifying cost an Ed25519 operation each (more for a forwarded chain), so each
//! member keeps two bounded caches (10,000 entries each):
//! - **minted tokens**: a call for the same audience, method, end user (id, role, session) and
//!   forwarded proof reuses the token minted for an earlier one while more than half of its life
//!   is left; the token is exactly what a fresh mint would sign but for `iat`/`exp`, so the
//!   callee learns nothing different, and a proof it forwards still has at least half the TTL
//!   (plus the clock skew) ahead of it, longer than a call's deadline;
//! - **verified tokens**: a token whose signature and claims checked out is remembered, by its
//!   exact text, with its claims until it expires (`exp` plus [`CLOCK_SKEW`], checked against
//!   the clock at every use, as the first verification did). Only that decoding is skipped: the
//!   audience, method and grants are checked for every call. Refused tokens are not remembered,
//!   so only tokens signed by trusted keys take room, and strangers cannot churn the cache.
//!
//! Reuse proves nothing a fresh token would not. Mesh tokens carry no `jti` or nonce and no
//! member keeps a replay log: a token is a bearer proof, valid for one audience and one method
//! until it expires, and whoever captures one (see "What is not defended" in the security docs)
//! can already present it as often as they like within that life. A reused token is that same
//! proof presented by its own signer, never past its `exp`.
//!
//! Configuration (see [`MeshIdentity::from_env`]): `SHOP_MESH_KEY` (this member's key),
//! `SHOP_MESH_TRUST` (the public keys of the callers it accepts, several per caller during a
//! rotation), `SHOP_MESH_GRANTS` (added to [`DEFAULT_GRANTS`]), `SHOP_MESH_TOKEN_TTL`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::identity::{Caller, Role};
use crate::bounded::{BoundedCache, CAPACITY};
use crate::config::{ConfigError, Env, ExposeSecret as _};

/// The metadata entry carrying the mesh token.
pub const TOKEN_METADATA: &str = "x-shop-mesh-token";

/// The standard members' names: also the audiences of the services.
pub const GATEWAY: &str = "gateway";
/// The user service.
pub const USER: &str = "user";
/// The catalog service.
pub const CATALOG: &str = "catalog";
/// The order service.
pub const ORDER: &str = "order";
/// The name whose default grant is server reflection (an operator's tools).
pub const OPERATOR: &str = "operator";
/// The members a deployment runs, each with a key of its own: the gateway and the services.
pub const MEMBERS: [&str; 4] = [GATEWAY, USER, CATALOG, ORDER];

/// How long a token minted here lives unless `SHOP_MESH_TOKEN_TTL` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(30);
/// The longest life a verifier accepts (`exp - iat`), whoever minted the token.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Clock difference tolerated between members.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Longest token accepted (a forwarded chain included).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// How many forwarding steps a user identity may travel (gateway → order → user → catalog is 2).
pub const MAX_FORWARDS: usize = 4;

/// The grant that lets a caller assert an end user in its own tokens.
pub const ASSERT_USER: &str = "as-user";

/// The grants of the standard mesh, always in force (`SHOP_MESH_GRANTS` adds to them):
/// - the gateway calls every method of the shop's services and asserts the signed-in user;
/// - the order service reads products and the caller's cart lines (it prices them itself;
///   the lines it bought leave the cart on its OrderPlaced message, not by a call);
/// - the user service reads products (to price carts and check wishlist items);
/// - `operator` may use server reflection.
pub const DEFAULT_GRANTS: &str = "\
gateway=shop.user.v1.*,shop.catalog.v1.*,shop.order.v1.*,as-user;\
order=shop.catalog.v1.CatalogService/BatchGetProducts,shop.user.v1.CartService/GetCartLines;\
user=shop.catalog.v1.CatalogService/BatchGetProducts;\
operator=grpc.reflection.*";

/// An Ed25519 signing key (this member's proof of identity).
#[derive(Clone)]
pub struct MeshKey(SigningKey);

impl fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MeshKey")
            .field(&encode_public(&self.public_key()))
            .finish()
    }
}

impl MeshKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0_u8; 32];
        rand::fill(&mut seed);
        Self(SigningKey::from_bytes(&seed))
    }

    /// Reads a key: the base64 (standard or URL-safe, padded or not) of its 32-byte seed, or a
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm ed25519`
    /// writes it).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.starts_with("-----BEGIN") {
            return SigningKey::from_pkcs8_pem(raw)
                .map(Self)
                .map_err(|error| format!("not an Ed25519 PKCS#8 PEM key: {error}"));
        }
        let bytes = decode_base64(raw).ok_or("neither a PEM key nor base64")?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| format!("an Ed25519 seed is 32 bytes, not {}", bytes.len()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The seed in URL-safe base64 (what `SHOP_MESH_KEY` takes).
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.to_bytes())
    }

    /// The public key that verifies this key's tokens.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }
}

/// A public key in URL-safe base64 (what `SHOP_MESH_TRUST` takes).
pub fn encode_public(key: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

fn decode_base64(raw: &str) -> Option<Vec<u8>> {
    let trimmed = raw.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| STANDARD.decode(raw.trim()).ok())
}

/// Fresh keys for the members of one mesh, as its Secret holds them: a key for each member and
/// the trust set naming them all. Callers outside the deployment (an internal team's client) may
/// be among them: their keys are trusted, but only the members that run get theirs.
#[derive(Clone, Debug)]
pub struct MeshSecret(Vec<(String, MeshKey)>);

impl MeshSecret {
    /// A fresh key for each of `names`, in that order.
    pub fn generate(names: &[&str]) -> Self {
        Self(
            names
                .iter()
                .map(|name| ((*name).to_owned(), MeshKey::generate()))
                .collect(),
        )
    }

    /// The key of `name`, if it is one of them.
    pub fn key(&self, name: &str) -> Option<&MeshKey> {
        self.0.iter().find(|(member, _)| member == name).map(|(_, key)| key)
    }

    /// The `SHOP_MESH_TRUST` naming every key: `name=public-key …`.
    pub fn trust(&self) -> String {
        self.0
            .iter()
            .map(|(name, key)| format!("{name}={}", encode_public(&key.public_key())))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The Secret's key entries for `holders`: `<name>.key` and the key as `SHOP_MESH_KEY` takes it.
    pub fn key_entries(&self, holders: &[&str]) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(name, _)| holders.contains(&name.as_str()))
            .map(|(name, key)| (format!("{name}.key"), key.to_base64()))
            .collect()
    }
}

/// The public keys of the callers a service accepts, by caller name; several per caller while a
/// key rotates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustSet(BTreeMap<String, BTreeSet<[u8; 32]>>);

impl TrustSet {
    /// Parses `name=key name=key …` (separated by spaces, commas, semicolons or newlines; a
    /// name may appear several times; a key is the base64 of the 32-byte public key).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut trust = Self::default();
        for entry in raw.split([' ', ',', ';', '\n', '\r', '\t']).filter(|e| !e.is_empty()) {
            let (name, key) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not name=public-key"))?;
            check_name(name)?;
            let key = decode_base64(key)
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| format!("the key of {name:?} is not the base64 of 32 bytes"))?;
            VerifyingKey::from_bytes(&key).map_err(|_| format!("the key of {name:?} is not an Ed25519 public key"))?;
            trust.insert(name, key);
        }
        Ok(trust)
    }

    /// Trusts `key` for `name` (besides its other keys).
    pub fn insert(&mut self, name: &str, key: [u8; 32]) {
        self.0.entry(name.to_owned()).or_default().insert(key);
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: &Self) {
        for (name, keys) in &other.0 {
            for key in keys {
                self.insert(name, *key);
            }
        }
    }

    fn keys(&self, name: &str) -> impl Iterator<Item = &[u8; 32]> {
        self.0.get(name).into_iter().flatten()
    }

    /// The callers with at least one key.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a caller name (lowercase letters, digits, - and _)"
        ))
    }
}

/// Which caller may call which methods, and which callers may assert end users.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(BTreeMap<String, BTreeSet<String>>);

impl Grants {
    /// Parses `caller=scope,scope;caller=scope` (entries separated by semicolons or newlines). A
    /// scope is a method (`shop.order.v1.OrderService/ListOrders`), a prefix ending in `*`
    /// (`shop.catalog.v1.*`, `*`), or [`ASSERT_USER`].
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut grants = Self::default();
        for entry in raw.split([';', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
            let (name, scopes) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not caller=method,method"))?;
            let name = name.trim();
            check_name(name)?;
            let set = grants.0.entry(name.to_owned()).or_default();
            for scope in scopes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let valid = scope == ASSERT_USER
                    || scope.ends_with('*')
                    || (scope.contains('/') && !scope.starts_with('/') && !scope.contains(char::is_whitespace));
                if !valid {
                    return Err(format!(
                        "{scope:?} is not a method (package.Service/Method), a prefix ending in *, or {ASSERT_USER}"
                    ));
                }
                set.insert(scope.to_owned());
            }
        }
        Ok(grants)
    }

    /// [`DEFAULT_GRANTS`].
    pub fn standard() -> Self {
        Self::parse(DEFAULT_GRANTS).unwrap_or_default()
    }

    /// Adds every grant of `other`.
    pub fn extend(&mut self, other: &Self) {
        for (name, scopes) in &other.0 {
            self.0.entry(name.clone()).or_default().extend(scopes.iter().cloned());
        }
    }

    /// Whether `caller` may call `method` (`package.Service/Method`).
    pub fn allows(&self, caller: &str, method: &str) -> bool {
        self.0.get(caller).is_some_and(|scopes| {
            scopes.iter().any(|scope| match scope.strip_suffix('*') {
                Some(prefix) => scope != ASSERT_USER && method.starts_with(prefix),
                None => scope == method,
            })
        })
    }

    /// Whether `caller` may assert an end user in its own tokens.
    pub fn may_assert_user(&self, caller: &str) -> bool {
        self.0.get(caller).is_some_and(|scopes| scopes.contains(ASSERT_USER))
    }
}

/// What every member of one mesh shares: the keys trusted, the grants, the tokens' life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshSettings {
    /// `SHOP_MESH_TRUST`.
    pub trust: TrustSet,
    /// `SHOP_MESH_GRANTS` (added to [`DEFAULT_GRANTS`]).
    pub grants: Grants,
    /// `SHOP_MESH_TOKEN_TTL`.
    pub ttl: Duration,
}

impl Default for MeshSettings {
    /// No key trusted beyond the members', no grant beyond the standard ones, 30 s tokens.
    fn default() -> Self {
        Self {
            trust: TrustSet::default(),
            grants: Grants::default(),
            ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

impl MeshSettings {
    /// Reads `SHOP_MESH_TRUST`, `SHOP_MESH_GRANTS` and `SHOP_MESH_TOKEN_TTL` (see
    /// [`MeshIdentity::from_env`]).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let trust = TrustSet::parse(&env.var("SHOP_MESH_TRUST").unwrap_or_default())
            .map_err(|reason| ConfigError::new("SHOP_MESH_TRUST", reason))?;
        let grants = Grants::parse(&env.var("SHOP_MESH_GRANTS").unwrap_or_default())
            .map_err(|reason| ConfigError::new("SHOP_MESH_GRANTS", reason))?;
        let ttl = env.duration_or("SHOP_MESH_TOKEN_TTL", DEFAULT_TOKEN_TTL)?;
        if ttl < Duration::from_secs(1) || ttl > MAX_TOKEN_TTL {
            return Err(ConfigError::new("SHOP_MESH_TOKEN_TTL", "must be between 1s and 5m"));
        }
        Ok(Self { trust, grants, ttl })
    }
}

/// One mesh member: its name, its key, and (as a server) whom it trusts for what.
#[derive(Clone)]
pub struct MeshIdentity(Arc<Inner>);

struct Inner {
    name: String,
    key: MeshKey,
    encoding: EncodingKey,
    trust: TrustSet,
    grants: Grants,
    ttl: Duration,
    /// Tokens minted for calls, reused while young (see the module docs).
    minted: BoundedCache<Call, Minted>,
    /// Tokens verified, by their text, with their claims (see the module docs).
    verified: BoundedCache<String, Arc<Claims>>,
}

impl Inner {
    fn new(name: String, key: MeshKey, encoding: EncodingKey, trust: TrustSet, grants: Grants, ttl: Duration) -> Self {
        Self {
            name,
            key,
            encoding,
            trust,
            grants,
            ttl,
            minted: BoundedCache::new(CAPACITY),
            verified: BoundedCache::new(CAPACITY),
        }
    }
}

impl fmt::Debug for MeshIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshIdentity")
            .field("name", &self.0.name)
            .field("key", &self.0.key)
            .field("trusted", &self.0.trust.names().collect::<Vec<_>>())
            .field("ttl", &self.0.ttl)
            .finish_non_exhaustive()
    }
}

impl PartialEq for MeshIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
            && self.0.key.public_key() == other.0.key.public_key()
            && self.0.trust == other.0.trust
            && self.0.grants == other.0.grants
            && self.0.ttl == other.0.ttl
    }
}

impl Eq for MeshIdentity {}

/// The claims of a mesh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mth: String,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usr: Option<UserClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct UserClaim {
    sub: Uuid,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<Uuid>,
}

/// What a minted token says besides its issuer (this member) and its times: the key of the
/// minted tokens' cache.
#[derive(PartialEq, Eq, Hash)]
struct Call {
    aud: String,
    mth: String,
    usr: Option<UserClaim>,
    fwd: Option<String>,
}

/// A token in the minted tokens' cache.
#[derive(Clone)]
struct Minted {
    token: String,
    iat: u64,
    exp: u64,
}

impl Minted {
    /// Whether more than half of its life is left (to the sub-second: `iat` and `exp` are whole
    /// seconds, the clock is not).
    fn reusable(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let left = Duration::from_secs(self.exp).saturating_sub(now);
        left.saturating_mul(2) > Duration::from_secs(self.exp.saturating_sub(self.iat))
    }
}

/// A verified call: who made it, and for which end user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshCaller {
    /// The calling member (`gateway`, `order`, …).
    pub service: String,
    /// The end user the call is made for.
    pub user: Option<Caller>,
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No valid proof of who is calling: UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// A proven caller without the grant: PERMISSION_DENIED.
    #[error("{0}")]
    PermissionDenied(String),
}

impl Refusal {
    /// The gRPC status, with the machine code `mesh_unauthenticated` or `mesh_permission_denied`.
    pub fn into_status(self) -> tonic::Status {
        let (mut status, code) = match self {
            Self::Unauthenticated(message) => (tonic::Status::unauthenticated(message), "mesh_unauthenticated"),
            Self::PermissionDenied(message) => (tonic::Status::permission_denied(message), "mesh_permission_denied"),
        };
        status.metadata_mut().insert(
            super::error::ERROR_CODE_METADATA,
            tonic::metadata::MetadataValue::from_static(code),
        );
        status
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Whether a token expiring at `exp` is still accepted: the verifier's rule, with its leeway.
fn unexpired(exp: u64) -> bool {
    exp.saturating_add(CLOCK_SKEW.as_secs()) >= now()
}

impl MeshIdentity {
    /// Member `name` signing with `key`, trusting `trust`, with the standard grants plus
    /// `grants`, minting tokens that live [`DEFAULT_TOKEN_TTL`].
    pub fn new(name: &str, key: MeshKey, trust: TrustSet, grants: &Grants) -> Result<Self, String> {
        check_name(name)?;
        let der = key
            .0
            .to_pkcs8_der()
            .map_err(|error| format!("encoding the mesh key: {error}"))?;
        let mut all = Grants::standard();
        all.extend(grants);
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        Ok(Self(Arc::new(Inner::new(
            name.to_owned(),
            key,
            encoding,
            trust,
            all,
            DEFAULT_TOKEN_TTL,
        ))))
    }

    /// The same member, minting tokens that live `ttl` (at most [`MAX_TOKEN_TTL`]), with caches
    /// of its own.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        let inner = &self.0;
        Self(Arc::new(Inner::new(
            inner.name.clone(),
            inner.key.clone(),
            inner.encoding.clone(),
            inner.trust.clone(),
            inner.grants.clone(),
            ttl.min(MAX_TOKEN_TTL),
        )))
    }

    /// Member `name` from the environment:
    /// - `SHOP_MESH_KEY`: its signing key (see [`MeshKey::parse`]); without it, a key made up at
    ///   start, which no other member trusts (it can serve, not call);
    /// - `SHOP_MESH_TRUST`: `caller=public-key …`, the callers it accepts (see
    ///   [`TrustSet::parse`]); without it, nobody: every call but health is refused;
    /// - `SHOP_MESH_GRANTS`: grants added to [`DEFAULT_GRANTS`] (see [`Grants::parse`]);
    /// - `SHOP_MESH_TOKEN_TTL`: the life of the tokens it mints (default 30s, at most 5m).
    pub fn from_env(env: &impl Env, name: &str) -> Result<Self, ConfigError> {
        let key = match env.secret("SHOP_MESH_KEY") {
            Some(raw) => {
                MeshKey::parse(raw.expose_secret()).map_err(|reason| ConfigError::new("SHOP_MESH_KEY", reason))?
            }
            None => MeshKey::generate(),
        };
        let settings = MeshSettings::from_env(env)?;
        Ok(Self::new(name, key, settings.trust, &settings.grants)
            .map_err(|reason| ConfigError::new("SHOP_MESH_KEY", reason))?
            .with_ttl(settings.ttl))
    }

    /// The one-process mesh: a fresh key for each of `names`, each member trusting all of them
    /// plus the keys of `settings` (internal teams'), with the standard grants plus its grants.
    pub fn ephemeral_mesh(names: &[&str], settings: &MeshSettings) -> Result<BTreeMap<String, Self>, String> {
        let keys: Vec<(&str, MeshKey)> = names.iter().map(|name| (*name, MeshKey::generate())).collect();
        let mut trust = settings.trust.clone();
        for (name, key) in &keys {
            trust.insert(name, key.public_key());
        }
        keys.into_iter()
            .map(|(name, key)| {
                let identity = Self::new(name, key, trust.clone(), &settings.grants)?.with_ttl(settings.ttl);
                Ok((name.to_owned(), identity))
            })
            .collect()
    }

    /// This member's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Its public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.key.public_key()
    }

    /// The grants it enforces as a server.
    pub fn grants(&self) -> &Grants {
        &self.0.grants
    }

    /// A token for calling `method` (`package.Service/Method`) of service `audience`, for `user`
    /// if given: asserted directly when this member may assert users, else forwarded with the
    /// proof it was received with (a user without that proof is not sent, and the called
    /// service treats the call as anonymous). The token minted for the same call earlier is
    /// returned again while more than half of its life is left.
    pub fn mint(
        &self,
        audience: &str,
        method: &str,
        user: Option<&Caller>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let (usr, fwd) = match user {
            Some(user) if self.0.grants.may_assert_user(&self.0.name) => (
                Some(UserClaim {
                    sub: user.user_id,
                    role: user.role.as_str().to_owned(),
                    sid: user.session_id,
                }),
                None,
            ),
            Some(user) => (None, user.proof().map(str::to_owned)),
            None => (None, None),
        };
        let call = Call {
            aud: audience.to_owned(),
            mth: method.trim_start_matches('/').to_owned(),
            usr,
            fwd,
        };
        if let Some(minted) = self.0.minted.get(&call, Minted::reusable) {
            return Ok(minted.token);
        }
        let iat = now();
        let exp = iat.saturating_add(self.0.ttl.as_secs().max(1));
        let claims = Claims {
            iss: self.0.name.clone(),
            aud: call.aud.clone(),
            mth: call.mth.clone(),
            iat,
            exp,
            usr: call.usr.clone(),
            fwd: call.fwd.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.0.encoding)?;
        let minted = Minted {
            token: token.clone(),
            iat,
            exp,
        };
        self.0.minted.insert(call, minted, Minted::reusable);
        Ok(token)
    }

    /// Verifies the token of a call to `method` of this service (see the module docs).
    pub fn verify(&self, token: Option<&str>, method: &str) -> Result<MeshCaller, Refusal> {
        let token = token
            .ok_or_else(|| Refusal::Unauthenticated(format!("no {TOKEN_METADATA}: mesh callers sign every call")))?;
        let method = method.trim_start_matches('/');
        let claims = self.verified_claims(token, &self.0.name)?;
        if claims.mth != method {
            return Err(Refusal::Unauthenticated(format!(
                "the token was minted for {:?}, not {method:?}",
                claims.mth
            )));
        }
        if !self.0.grants.allows(&claims.iss, method) {
            return Err(Refusal::PermissionDenied(format!(
                "{} may not call {method}",
                claims.iss
            )));
        }
        let user = self.user_of(&claims, token, 0)?;
        Ok(MeshCaller {
            service: claims.iss.clone(),
            user,
        })
    }

    /// The claims of `token` once its signature (by a trusted key of its issuer), audience
    /// (`audience`), expiry and lifetime are checked: remembered from an earlier call while the
    /// token is unexpired and addressed to `audience`, else checked in full (and remembered if
    /// they pass; anything else is refused by that full check, with its reason).
    fn verified_claims(&self, token: &str, audience: &str) -> Result<Arc<Claims>, Refusal> {
        let usable = |claims: &Arc<Claims>| claims.aud == audience && unexpired(claims.exp);
        if let Some(claims) = self.0.verified.get(token, usable) {
            return Ok(claims);
        }
        let claims = Arc::new(self.decoded_claims(token, audience)?);
        self.0
            .verified
            .insert(token.to_owned(), Arc::clone(&claims), |claims| unexpired(claims.exp));
        Ok(claims)
    }

    /// [`Self::verified_claims`] without the cache: the signature checked, the claims decoded.
    fn decoded_claims(&self, token: &str, audience: &str) -> Result<Claims, Refusal> {
        let invalid = |why: &str| Refusal::Unauthenticated(format!("invalid mesh token: {why}"));
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("not EdDSA"));
        }
        #[derive(Deserialize)]
        struct Issuer {
            iss: String,
        }
        // Only to pick the keys to try: nothing is believed before the signature is checked.
        let issuer = jsonwebtoken::dangerous::insecure_decode_claims::<Issuer>(token)
            .map_err(|_| invalid("no issuer"))?
            .iss;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "iat"]);
        validation.leeway = CLOCK_SKEW.as_secs();
        let mut outcome = Err(Refusal::Unauthenticated(format!(
            "{issuer:?} is not a trusted mesh caller"
        )));
        for key in self.0.trust.keys(&issuer) {
            match jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_ed_der(key), &validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(error) => {
                    outcome = Err(match error.kind() {
                        ErrorKind::InvalidSignature => invalid(&format!("not signed by a trusted key of {issuer:?}")),
                        ErrorKind::ExpiredSignature => invalid("expired"),
                        ErrorKind::InvalidAudience => invalid(&format!("not addressed to {audience:?}")),
                        _ => invalid("malformed claims"),
                    });
                    if !matches!(error.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        let claims = outcome?;
        let longest = MAX_TOKEN_TTL + CLOCK_SKEW;
        if claims.exp.saturating_sub(claims.iat) > longest.as_secs() || claims.iat > now() + CLOCK_SKEW.as_secs() {
            return Err(invalid("lives too long"));
        }
        Ok(claims)
    }

    /// The end user of verified `claims` (`token` is their token, `depth` forwards deep).
    fn user_of(&self, claims: &Claims, token: &str, depth: usize) -> Result<Option<Caller>, Refusal> {
        match (&claims.usr, &claims.fwd) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(Refusal::Unauthenticated("invalid mesh token: both usr and fwd".into())),
            (Some(user), None) => {
                if !self.0.grants.may_assert_user(&claims.iss) {
                    return Err(Refusal::PermissionDenied(format!(
                        "{} may not assert an end user",
                        claims.iss
                    )));
                }
                let role: Role = user
                    .role
                    .parse()
                    .map_err(|reason: String| Refusal::Unauthenticated(format!("invalid mesh token: {reason}")))?;
                Ok(Some(Caller::new(user.sub, role, user.sid).with_proof(token)))
            }
            (None, Some(forwarded)) => {
                if depth >= MAX_FORWARDS {
                    return Err(Refusal::Unauthenticated(
                        "invalid mesh token: forwarded too often".into(),
                    ));
                }
                // The forwarded token was addressed to the member forwarding it.
                let inner = self.verified_claims(forwarded, &claims.iss)?;
                let user = self.user_of(&inner, forwarded, depth + 1)?;
                // The proof this service forwards in turn is the token it received.
                Ok(user.map(|user| user.with_proof(token)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const LIST: &str = "shop.user.v1.WishlistService/ListWishlist";
    const ADD: &str = "shop.user.v1.WishlistService/AddWishlistItem";

    /// The standard members and `reports` (granted [`LIST`]), minting tokens that live `ttl`.
    fn mesh(ttl: Duration) -> BTreeMap<String, MeshIdentity> {
        let settings = MeshSettings {
            grants: Grants::parse(&format!("reports={LIST}")).unwrap(),
            ttl,
            ..MeshSettings::default()
        };
        MeshIdentity::ephemeral_mesh(&[GATEWAY, USER, CATALOG, ORDER, "reports"], &settings).unwrap()
    }

    #[test]
    fn a_call_reuses_its_token_while_it_is_young() {
        let mesh = mesh(DEFAULT_TOKEN_TTL);
        let user = Caller::new(Uuid::new_v4(), Role::Customer, Some(Uuid::new_v4()));
        let first = mesh[GATEWAY].mint(USER, LIST, Some(&user)).unwrap();
        // A second later a fresh token would have another `iat` (signing is deterministic, so
        // within the same second it would not tell).
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(mesh[GATEWAY].mint(USER, LIST, Some(&user)).unwrap(), first);
        // The method's leading slash (as the request path has it) is not part of the call.
        assert_eq!(
            mesh[GATEWAY].mint(USER, &format!("/{LIST}"), Some(&user)).unwrap(),
            first
        );
    }

    #[test]
    fn every_claim_of_a_call_keys_its_token() {
        let mesh = mesh(DEFAULT_TOKEN_TTL);
        let gateway = &mesh[GATEWAY];
        let (id, session) = (Uuid::new_v4(), Uuid::new_v4());
        let user = Caller::new(id, Role::Customer, Some(session));
        let token = gateway.mint(USER, LIST, Some(&user)).unwrap();
        let others = [
            gateway.mint(CATALOG, LIST, Some(&user)).unwrap(),
            gateway.mint(USER, ADD, Some(&user)).unwrap(),
            gateway.mint(USER, LIST, None).unwrap(),
            gateway
                .mint(
                    USER,
                    LIST,
                    Some(&Caller::new(Uuid::new_v4(), Role::Customer, Some(session))),
                )
                .unwrap(),
            gateway
                .mint(USER, LIST, Some(&Caller::new(id, Role::Admin, Some(session))))
                .unwrap(),
            gateway
                .mint(USER, LIST, Some(&Caller::new(id, Role::Customer, None)))
                .unwrap(),
            gateway
                .mint(USER, LIST, Some(&Caller::new(id, Role::Customer, Some(Uuid::new_v4()))))
                .unwrap(),
        ];
        for other in &others {
            assert_ne!(*other, token);
        }
        assert_eq!(
            others.iter().collect::<BTreeSet<_>>().len(),
            others.len(),
            "each call has a token of its own"
        );

        // A forwarding member: the proof it forwards is part of the call.
        let batch = "shop.catalog.v1.CatalogService/BatchGetProducts";
        let place = "shop.order.v1.OrderService/PlaceOrder";
        let proof = |user: &Caller| {
            let token = gateway.mint(ORDER, place, Some(user)).unwrap();
            mesh[ORDER].verify(Some(&token), place).unwrap().user.unwrap()
        };
        let (received, from_another_user) = (proof(&user), proof(&Caller::new(Uuid::new_v4(), Role::Customer, None)));
        let forwarded = mesh[ORDER].mint(CATALOG, batch, Some(&received)).unwrap();
        assert_eq!(mesh[ORDER].mint(CATALOG, batch, Some(&received)).unwrap(), forwarded);
        assert_ne!(
            mesh[ORDER].mint(CATALOG, batch, Some(&from_another_user)).unwrap(),
            forwarded
        );
        assert_ne!(mesh[ORDER].mint(CATALOG, batch, None).unwrap(), forwarded);
        assert_eq!(mesh[CATALOG].verify(Some(&forwarded), batch).unwrap().user, Some(user));
    }

    #[test]
    fn a_token_past_half_its_life_is_minted_afresh() {
        let mesh = mesh(Duration::from_secs(2));
        let first = mesh[GATEWAY].mint(USER, LIST, None).unwrap();
        // `iat` is a whole second: 1.1 s later less than 0.9 s of the 2 s are left.
        std::thread::sleep(Duration::from_millis(1_100));
        let second = mesh[GATEWAY].mint(USER, LIST, None).unwrap();
        assert_ne!(second, first);
        assert_eq!(mesh[GATEWAY].mint(USER, LIST, None).unwrap(), second);
        assert!(mesh[USER].verify(Some(&second), LIST).is_ok());
    }

    #[test]
    fn a_remembered_token_is_refused_once_expired() {
        let mesh = mesh(DEFAULT_TOKEN_TTL);
        let gateway = &mesh[GATEWAY];
        // Expired 4 s ago: still within the clock skew allowed, for 1 to 2 s more.
        let issued = now();
        let claims = Claims {
            iss: GATEWAY.to_owned(),
            aud: USER.to_owned(),
            mth: LIST.to_owned(),
            iat: issued - 10,
            exp: issued - 4,
            usr: None,
            fwd: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &gateway.0.encoding).unwrap();
        assert!(mesh[USER].verify(Some(&token), LIST).is_ok());
        assert_eq!(mesh[USER].0.verified.len(), 1, "the verified token is remembered");
        std::thread::sleep(Duration::from_millis(2_050));
        let refusal = mesh[USER].verify(Some(&token), LIST).unwrap_err();
        assert_eq!(refusal, Refusal::Unauthenticated("invalid mesh token: expired".into()));
    }

    #[test]
    fn a_remembered_token_is_still_checked_against_each_call() {
        let mesh = mesh(DEFAULT_TOKEN_TTL);
        let token = mesh[GATEWAY].mint(USER, LIST, None).unwrap();
        assert!(mesh[USER].verify(Some(&token), LIST).is_ok());
        assert_eq!(mesh[USER].0.verified.len(), 1, "the verified token is remembered");
        for _ in 0..2 {
            assert!(matches!(
                mesh[USER].verify(Some(&token), ADD),
                Err(Refusal::Unauthenticated(message)) if message.contains("was minted for")
            ));
        }
        // A token from a caller without the grant: its claims verify, the grant is refused every time.
        let add = mesh["reports"].mint(USER, ADD, None).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                mesh[USER].verify(Some(&add), ADD),
                Err(Refusal::PermissionDenied(_))
            ));
        }
        assert!(
            mesh[USER]
                .verify(Some(&mesh["reports"].mint(USER, LIST, None).unwrap()), LIST)
                .is_ok()
        );
        // Remembered by one service, refused by another it was not addressed to.
        assert!(matches!(
            mesh[CATALOG].verify(Some(&token), LIST),
            Err(Refusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn a_tampered_token_is_refused_after_the_genuine_one_was_remembered() {
        let mesh = mesh(DEFAULT_TOKEN_TTL);
        let token = mesh[GATEWAY].mint(USER, LIST, None).unwrap();
        assert!(mesh[USER].verify(Some(&token), LIST).is_ok());
        // One character in the middle of the signature (the last one may carry only padding bits).
        let at = token.rfind('.').unwrap() + 20;
        let changed = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{changed}{}", &token[..at], &token[at + 1..]);
        assert!(matches!(
            mesh[USER].verify(Some(&tampered), LIST),
            Err(Refusal::Unauthenticated(message)) if message.contains("not signed by a trusted key")
        ));
        assert!(mesh[USER].verify(Some(&token), LIST).is_ok());
    }

    #[test]
    fn keys_parse_from_base64_and_pem() {
        let key = MeshKey::generate();
        let again = MeshKey::parse(&key.to_base64()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let standard = STANDARD.encode(key.0.to_bytes());
        assert_eq!(MeshKey::parse(&standard).unwrap().public_key(), key.public_key());
        let pem = key.0.to_pkcs8_pem(Default::default()).unwrap();
        assert_eq!(MeshKey::parse(&pem).unwrap().public_key(), key.public_key());
        assert!(MeshKey::parse("c2hvcnQ").is_err());
        assert!(MeshKey::parse("-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----").is_err());
    }

    #[test]
    fn a_secret_trusts_every_key_and_hands_out_only_the_holders() {
        let secret = MeshSecret::generate(&[GATEWAY, ORDER, "reports"]);
        let trust = TrustSet::parse(&secret.trust()).unwrap();
        assert_eq!(trust.names().collect::<Vec<_>>(), [GATEWAY, ORDER, "reports"]);
        let entries = secret.key_entries(&MEMBERS);
        assert_eq!(
            entries.iter().map(|(entry, _)| entry.as_str()).collect::<Vec<_>>(),
            ["gateway.key", "order.key"]
        );
        for (entry, raw) in &entries {
            let name = entry.trim_end_matches(".key");
            let key = MeshKey::parse(raw).unwrap();
            assert_eq!(key.public_key(), secret.key(name).unwrap().public_key());
            assert!(trust.keys(name).any(|trusted| *trusted == key.public_key()));
        }
        assert!(secret.key(USER).is_none());
    }

    #[test]
    fn trust_sets_and_grants_parse() {
        let (a, b) = (MeshKey::generate(), MeshKey::generate());
        let raw = format!(
            "gateway={}, gateway={}\nreports={}",
            encode_public(&a.public_key()),
            encode_public(&b.public_key()),
            encode_public(&a.public_key())
        );
        let trust = TrustSet::parse(&raw).unwrap();
        assert_eq!(trust.keys("gateway").count(), 2);
        assert_eq!(trust.names().collect::<Vec<_>>(), ["gateway", "reports"]);
        for bad in ["gateway", "Gateway=abc", "x=c2hvcnQ"] {
            assert!(TrustSet::parse(bad).is_err(), "{bad}");
        }

        let grants = Grants::parse("reports=shop.order.v1.OrderService/ListOrders, shop.catalog.v1.*; ops=*").unwrap();
        assert!(grants.allows("reports", "shop.order.v1.OrderService/ListOrders"));
        assert!(!grants.allows("reports", "shop.order.v1.OrderService/CancelOrder"));
        assert!(grants.allows("reports", "shop.catalog.v1.CatalogService/GetProduct"));
        assert!(grants.allows("ops", "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(!grants.allows("nobody", "shop.catalog.v1.CatalogService/GetProduct"));
        assert!(!grants.may_assert_user("reports"));
        for bad in ["reports", "reports=ListOrders", "Reports=*", "r=/a/b"] {
            assert!(Grants::parse(bad).is_err(), "{bad}");
        }
        let standard = Grants::standard();
        assert!(standard.may_assert_user(GATEWAY));
        assert!(!standard.may_assert_user(ORDER));
        assert!(standard.allows(ORDER, "shop.user.v1.CartService/GetCartLines"));
        assert!(standard.allows(ORDER, "shop.catalog.v1.CatalogService/BatchGetProducts"));
        // It neither has the user service price the cart nor removes lines by calls any more.
        assert!(!standard.allows(ORDER, "shop.user.v1.CartService/GetCart"));
        assert!(!standard.allows(ORDER, "shop.user.v1.CartService/RemoveCartLines"));
        assert!(!standard.allows(ORDER, "shop.user.v1.UserService/SetUserRole"));
    }
}
