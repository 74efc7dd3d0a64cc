//! Access tokens: EdDSA (Ed25519) JWTs with `kid`, `sub`, `role`, `sid`, `jti`, `iat`, `exp`,
//! signed with the current key of `SHOP_JWT_SIGNING_KEYS`. Retired keys of that list are still
//! published (GetSigningKeys) until the last token they may have signed has expired, so keys
//! rotate without a restart of the gateway: add a new key in front, keep the old one behind it
//! for one access-token lifetime, then drop it.

use std::time::Duration;

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use shop_platform::grpc::identity::Role;
use uuid::Uuid;

/// The JWT `alg` of every access token.
pub const ALGORITHM: &str = "EdDSA";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// `customer`, `seller` or `admin`.
    pub role: String,
    /// The session id.
    pub sid: String,
    /// The token id.
    pub jti: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// A signed access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Its lifetime from now.
    pub expires_in: Duration,
}

/// A public key as GetSigningKeys publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id.
    pub kid: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
    /// For a retired key: when its last token expires. `None` for the current key.
    pub not_after: Option<DateTime<Utc>>,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    public_key: [u8; 32],
}

/// Issues access tokens and publishes the keys that verify them.
pub struct Tokens {
    current: Key,
    retired: Vec<Key>,
    retired_until: DateTime<Utc>,
    access_ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("kid", &self.current.kid)
            .field("retired", &self.retired.len())
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

/// Parses `kid=<base64url seed>[,kid=<seed>…]` into key ids and 32-byte Ed25519 seeds.
pub fn parse_signing_keys(raw: &str) -> Result<Vec<(String, [u8; 32])>, String> {
    let mut keys = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (kid, seed) = entry
            .split_once('=')
            .ok_or_else(|| "each key is written kid=<base64url 32-byte seed>".to_owned())?;
        let kid = kid.trim();
        let valid_kid = !kid.is_empty()
            && kid.len() <= 64
            && kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_kid {
            return Err(format!("key id {kid:?}: 1 to 64 letters, digits, '-', '_' or '.'"));
        }
        let seed = URL_SAFE_NO_PAD
            .decode(seed.trim().trim_end_matches('='))
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| format!("key {kid}: the seed must be 32 bytes in URL-safe base64"))?;
        if keys.iter().any(|(other, _)| other == kid) {
            return Err(format!("key id {kid} appears twice"));
        }
        keys.push((kid.to_owned(), seed));
    }
    if keys.is_empty() {
        return Err("no key given".to_owned());
    }
    Ok(keys)
}

/// A fresh random key: its id (`generated-<12 hex digits>`) and its 32-byte seed.
pub fn generate_key() -> (String, [u8; 32]) {
    let kid = format!(
        "generated-{}",
        &crate::secrets::digest_hex(&crate::secrets::random_bytes::<16>())[..12]
    );
    (kid, crate::secrets::random_bytes::<32>())
}

/// The `SHOP_JWT_SIGNING_KEYS` entry of one key: `kid=<base64url seed>`.
pub fn signing_key_entry(kid: &str, seed: &[u8; 32]) -> String {
    format!("{kid}={}", URL_SAFE_NO_PAD.encode(seed))
}

fn key(kid: String, seed: &[u8; 32]) -> anyhow::Result<Key> {
    let signing = SigningKey::from_bytes(seed);
    let der = signing
        .to_pkcs8_der()
        .map_err(|error| anyhow::anyhow!("encoding key {kid}: {error}"))?;
    Ok(Key {
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        public_key: signing.verifying_key().to_bytes(),
        kid,
    })
}

impl Tokens {
    /// Keys from `SHOP_JWT_SIGNING_KEYS`, or a generated one (with a warning) when unset.
    pub fn new(signing_keys: Option<&str>, access_ttl: Duration) -> anyhow::Result<Self> {
        let mut keys = match signing_keys {
            Some(raw) => parse_signing_keys(raw)
                .map_err(|reason| anyhow::anyhow!(reason))
                .context("SHOP_JWT_SIGNING_KEYS")?,
            None => {
                let (kid, seed) = generate_key();
                tracing::warn!(
                    %kid,
                    "SHOP_JWT_SIGNING_KEYS is not set: signing with a key generated at start; tokens will not survive \
                     a restart nor verify across replicas"
                );
                vec![(kid, seed)]
            }
        }
        .into_iter();
        let (kid, seed) = keys.next().context("no signing key")?;
        let current = key(kid, &seed)?;
        let retired = keys.map(|(kid, seed)| key(kid, &seed)).collect::<anyhow::Result<_>>()?;
        // A retired key signed its last token before this process started signing with the
        // current one, so every such token has expired one lifetime from now.
        let retired_until = Utc::now() + chrono::Duration::from_std(access_ttl).context("SHOP_ACCESS_TOKEN_TTL")?;
        Ok(Self {
            current,
            retired,
            retired_until,
            access_ttl,
        })
    }

    /// The lifetime of access tokens.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Signs an access token for `user` in `session`; returns it with its claims.
    pub fn issue(&self, user: Uuid, role: Role, session: Uuid) -> anyhow::Result<(AccessToken, Claims)> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.access_ttl.as_secs()).context("access token lifetime")?;
        let claims = Claims {
            sub: user.to_string(),
            role: role.as_str().to_owned(),
            sid: session.to_string(),
            jti: Uuid::new_v4().to_string(),
            iat: now,
            exp: now.saturating_add(ttl),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.current.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.current.encoding).context("signing an access token")?;
        Ok((
            AccessToken {
                token,
                expires_in: self.access_ttl,
            },
            claims,
        ))
    }

    /// The verification keys: the current one first, then the retired ones still needed.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        let mut keys = vec![PublicKey {
            kid: self.current.kid.clone(),
            public_key: self.current.public_key,
            not_after: None,
        }];
        if Utc::now() < self.retired_until {
            keys.extend(self.retired.iter().map(|key| PublicKey {
                kid: key.kid.clone(),
                public_key: key.public_key,
                not_after: Some(self.retired_until),
            }));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    fn seed(byte: u8) -> String {
        URL_SAFE_NO_PAD.encode([byte; 32])
    }

    #[test]
    fn tokens_verify_with_the_published_key_only() -> anyhow::Result<()> {
        let raw = format!("new={},old={}", seed(1), seed(2));
        let tokens = Tokens::new(Some(&raw), Duration::from_secs(900))?;
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, claims) = tokens.issue(user, Role::Seller, session)?;
        assert_eq!(claims.exp - claims.iat, 900);

        let header = jsonwebtoken::decode_header(&token.token)?;
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::EdDSA, Some("new")));
        let keys = tokens.public_keys();
        assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["new", "old"]);
        assert!(keys[0].not_after.is_none() && keys[1].not_after.is_some());

        let validation = Validation::new(Algorithm::EdDSA);
        let decoded = jsonwebtoken::decode::<Claims>(
            &token.token,
            &DecodingKey::from_ed_der(&keys[0].public_key),
            &validation,
        )?;
        assert_eq!(decoded.claims, claims);
        assert_eq!(decoded.claims.sub, user.to_string());
        assert_eq!(decoded.claims.role, "seller");
        assert_eq!(decoded.claims.sid, session.to_string());
        let wrong = jsonwebtoken::decode::<Claims>(
            &token.token,
            &DecodingKey::from_ed_der(&keys[1].public_key),
            &validation,
        );
        assert!(wrong.is_err());
        Ok(())
    }

    #[test]
    fn key_lists_are_checked() {
        assert!(parse_signing_keys(&format!("a={}", seed(1))).is_ok());
        for bad in [
            String::new(),
            "a".to_owned(),
            "a=short".to_owned(),
            format!("bad kid={}", seed(1)),
            format!("a={},a={}", seed(1), seed(2)),
        ] {
            assert!(parse_signing_keys(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_keys_one_is_generated() -> anyhow::Result<()> {
        let tokens = Tokens::new(None, Duration::from_secs(60))?;
        assert_eq!(tokens.public_keys().len(), 1);
        Ok(())
    }
}
