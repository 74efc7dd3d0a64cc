//! Slows password guessing down without letting strangers lock owners out.
//!
//! Failed password checks are counted in the cache **per (account, client)**, the client being
//! the address the gateway saw: past `client_limit` failures in a window, that client is refused
//! with RESOURCE_EXHAUSTED, before any hashing, for a backoff that doubles with every lockout
//! (`window`, 2×, 4×… up to `max_backoff`); a success forgets its failures and lockouts.
//!
//! Failures from all clients on one account are counted too, up to a much higher
//! `account_limit`: past it, the account is under attack from many clients, and it is
//! **slowed, never locked**: a client that has failed on it in the window is refused, a client
//! that has not (the owner, elsewhere) waits `account_delay` and is checked. Each client then gets
//! one guess per window, slowly; the owner still signs in.
//!
//! Each kind of check ([`PasswordCheck`]: sign-in, password change, deletion) has its own
//! counters. Unknown addresses are counted like known ones, so the throttle reveals nothing
//! about which addresses have accounts.

use std::time::Duration;

use shop_platform::grpc::error::ServiceError;

pub use crate::store::PasswordCheck;
use crate::{
    domain::Email,
    store::{self, Store},
};

/// The throttle's limits.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleSettings {
    /// Failures per (account, client) in a window before that client is locked out.
    pub client_limit: u32,
    /// How long failures are counted, and the first lockout.
    pub window: Duration,
    /// The longest lockout, however often a client comes back.
    pub max_backoff: Duration,
    /// Failures per account from all clients in a window before the account is slowed.
    pub account_limit: u32,
    /// How long a client without failures waits for its check on a slowed account.
    pub account_delay: Duration,
}

/// One password check: what for, on which account, from which client.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// Sign-in, password change or deletion.
    pub check: PasswordCheck,
    /// The account's address.
    pub email: &'a Email,
    /// The client asking (its address).
    pub client: &'a str,
}

/// Counts failed password checks.
#[derive(Clone, Debug)]
pub struct LoginThrottle {
    store: Store,
    settings: ThrottleSettings,
}

impl LoginThrottle {
    /// Limits as `settings` says.
    pub fn new(store: Store, settings: ThrottleSettings) -> Self {
        Self { store, settings }
    }

    fn refused(retry_after: Duration) -> ServiceError {
        ServiceError::RateLimited { retry_after }
    }

    /// Counts a password check BEFORE it runs, and refuses it (RateLimited) while its client is
    /// locked out. Counting first means parallel guesses cannot all pass a read-only check: at
    /// most `client_limit` checks run per client and window, whatever the concurrency. Only
    /// failures accumulate: a success resets the count ([`Self::succeeded`]).
    pub async fn attempt(&self, attempt: Attempt<'_>) -> Result<(), ServiceError> {
        let Attempt { check, email, client } = attempt;
        let cache = self.store.cache();
        let settings = &self.settings;
        let lock = store::password_lock_key(check, email, client);
        if cache.exists(&lock).await.map_err(store::unavailable)? {
            return Err(Self::refused(self.store.retry_after(&lock, settings.window).await));
        }
        let failures = store::password_failures_key(check, email, client);
        if self.account_failures(check, email).await? >= i64::from(settings.account_limit) {
            if cache.exists(&failures).await.map_err(store::unavailable)? {
                return Err(Self::refused(self.store.retry_after(&failures, settings.window).await));
            }
            tokio::time::sleep(settings.account_delay).await;
        }
        let count = cache
            .increment(&failures, settings.window)
            .await
            .map_err(store::unavailable)?;
        let limit = i64::from(settings.client_limit);
        if count == limit + 1 {
            // The first refusal of this window starts a lockout, longer with every one.
            let strikes = cache
                .increment(&store::password_strikes_key(check, email, client), settings.max_backoff)
                .await
                .map_err(store::unavailable)?;
            let lockout = backoff(settings.window, settings.max_backoff, strikes);
            cache.set(&lock, b"1", lockout).await.map_err(store::unavailable)?;
            return Err(Self::refused(lockout));
        }
        if count > limit {
            return Err(Self::refused(self.store.retry_after(&lock, settings.window).await));
        }
        Ok(())
    }

    async fn account_failures(&self, check: PasswordCheck, email: &Email) -> Result<i64, ServiceError> {
        let value = self
            .store
            .cache()
            .get(&store::account_failures_key(check, email))
            .await
            .map_err(store::unavailable)?;
        Ok(value
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse().ok())
            .unwrap_or(0))
    }

    /// Counts a failed check towards the account's ceiling.
    pub async fn failed(&self, attempt: Attempt<'_>) -> Result<(), ServiceError> {
        self.store
            .cache()
            .increment(
                &store::account_failures_key(attempt.check, attempt.email),
                self.settings.window,
            )
            .await
            .map_err(store::unavailable)?;
        Ok(())
    }

    /// Forgets the client's failures and lockouts after a successful check.
    pub async fn succeeded(&self, attempt: Attempt<'_>) -> Result<(), ServiceError> {
        let Attempt { check, email, client } = attempt;
        for key in [
            store::password_failures_key(check, email, client),
            store::password_strikes_key(check, email, client),
        ] {
            self.store.cache().delete(&key).await.map_err(store::unavailable)?;
        }
        Ok(())
    }
}

/// The lockout after `strikes` lockouts: `window`, doubled for each earlier one, at most `max`.
fn backoff(window: Duration, max: Duration, strikes: i64) -> Duration {
    let doublings = u32::try_from(strikes.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    window.saturating_mul(1 << doublings).min(max).max(window.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_up_to_the_maximum() {
        let (window, max) = (Duration::from_secs(60), Duration::from_secs(300));
        let lockouts: Vec<_> = (1..=5).map(|strikes| backoff(window, max, strikes).as_secs()).collect();
        assert_eq!(lockouts, [60, 120, 240, 300, 300]);
    }
}
