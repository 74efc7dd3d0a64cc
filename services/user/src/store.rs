//! The user service's view of the shared cache: every key it writes (under `user:`), and the one
//! translation of cache failures into service errors. Keys never hold an address or a token in
//! clear: addresses and secrets appear as digests.

use std::{sync::Arc, time::Duration};

use shop_platform::{
    cache::{Cache, CacheError},
    grpc::error::ServiceError,
};

use crate::domain::Email;

/// The cache, with the user service's key layout.
#[derive(Clone, Debug)]
pub struct Store {
    cache: Arc<dyn Cache>,
}

impl Store {
    /// Wraps the process's shared cache.
    pub fn new(cache: Arc<dyn Cache>) -> Self {
        Self { cache }
    }

    /// The underlying cache.
    pub fn cache(&self) -> &dyn Cache {
        &*self.cache
    }

    /// How long until `key` expires, or `fallback` if that cannot be told; for Retry-After.
    pub async fn retry_after(&self, key: &str, fallback: Duration) -> Duration {
        match self.cache.time_to_live(key).await {
            Ok(Some(left)) if !left.is_zero() => left,
            _ => fallback,
        }
    }
}

/// The hashed verification code sent to an address.
pub fn code_key(email: &Email) -> String {
    format!("user:verify:code:{}", email.key())
}

/// Attempts at the current code of an address.
pub fn attempts_key(email: &Email) -> String {
    format!("user:verify:attempts:{}", email.key())
}

/// Present while an address may not be sent another code yet.
pub fn resend_key(email: &Email) -> String {
    format!("user:verify:sent:{}", email.key())
}

/// Mails sent to an address in the current hour.
pub fn address_hour_key(email: &Email) -> String {
    format!("user:verify:hour:{}", email.key())
}

/// Verification requests from one client in the current hour.
pub fn client_hour_key(client: &str) -> String {
    format!(
        "user:verify:client:{}",
        &crate::secrets::digest_hex(client.as_bytes())[..32]
    )
}

/// A verification token (by digest), holding the address it confirms.
pub fn verification_token_key(token: &str) -> String {
    format!("user:verify:token:{}", crate::secrets::digest_hex(token.as_bytes()))
}

/// Failed sign-ins on an address in the current window.
pub fn login_failures_key(email: &Email) -> String {
    format!("user:login:failures:{}", email.key())
}

/// Present while an access token (by `jti`) is revoked.
pub fn revoked_token_key(jti: &str) -> String {
    format!("user:revoked:jti:{jti}")
}

/// Present while the access tokens of an ended session may still be unexpired.
pub fn ended_session_key(session: &str) -> String {
    format!("user:revoked:session:{session}")
}

/// A cache failure as the caller sees it: the service is unavailable, retry later.
pub fn unavailable(error: CacheError) -> ServiceError {
    tracing::warn!(%error, "cache call failed");
    ServiceError::Unavailable("the session store is unavailable; retry later".to_owned())
}
