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
    format!("user:verify:client:{}", client_digest(client))
}

/// A verification token (by digest), holding the address it confirms.
pub fn verification_token_key(token: &str) -> String {
    format!("user:verify:token:{}", crate::secrets::digest_hex(token.as_bytes()))
}

/// Which password check a throttle counter is for: each has its own counters, so a lockout of
/// one (sign-in) never blocks another (a password change), and the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Sign-in.
    Login,
    /// Confirming a password change.
    ChangePassword,
    /// Confirming an account deletion.
    DeleteAccount,
}

impl PasswordCheck {
    fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::ChangePassword => "change",
            Self::DeleteAccount => "delete",
        }
    }
}

fn client_digest(client: &str) -> String {
    crate::secrets::digest_hex(client.as_bytes())[..32].to_owned()
}

/// Failed checks of `check` on an address from one client in the current window.
pub fn password_failures_key(check: PasswordCheck, email: &Email, client: &str) -> String {
    format!(
        "user:{}:failures:{}:{}",
        check.label(),
        email.key(),
        client_digest(client)
    )
}

/// Present while one client may not try `check` on an address (its backoff).
pub fn password_lock_key(check: PasswordCheck, email: &Email, client: &str) -> String {
    format!("user:{}:lock:{}:{}", check.label(), email.key(), client_digest(client))
}

/// How many times one client was locked out of `check` on an address (the backoff's exponent).
pub fn password_strikes_key(check: PasswordCheck, email: &Email, client: &str) -> String {
    format!(
        "user:{}:strikes:{}:{}",
        check.label(),
        email.key(),
        client_digest(client)
    )
}

/// Failed checks of `check` on an address from all clients in the current window.
pub fn account_failures_key(check: PasswordCheck, email: &Email) -> String {
    format!("user:{}:account:{}", check.label(), email.key())
}

/// Present while an access token (by `jti`) is revoked.
pub fn revoked_token_key(jti: &str) -> String {
    format!("user:revoked:jti:{jti}")
}

/// The state of a session (`ended`, or `live` briefly after a database read); an ended one is
/// kept while its access tokens may still be unexpired.
pub fn session_state_key(session: &str) -> String {
    format!("user:revoked:session:{session}")
}

/// A cache failure as the caller sees it: the service is unavailable, retry later.
pub fn unavailable(error: CacheError) -> ServiceError {
    tracing::warn!(%error, "cache call failed");
    ServiceError::Unavailable("the session store is unavailable; retry later".to_owned())
}
