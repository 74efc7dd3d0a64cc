//! Slows password guessing down: password checks on one address are counted in the cache over a
//! fixed window (a success resets the count); past the limit, every password check for that
//! address is refused with RESOURCE_EXHAUSTED until the window ends, before any hashing. Unknown addresses are counted
//! like known ones, so the throttle reveals nothing about which addresses have accounts.

use std::time::Duration;

use shop_platform::grpc::error::ServiceError;

use crate::{
    domain::Email,
    store::{self, Store},
};

/// Counts failed password checks per address.
#[derive(Clone, Debug)]
pub struct LoginThrottle {
    store: Store,
    limit: u32,
    window: Duration,
}

impl LoginThrottle {
    /// At most `limit` failures per `window`.
    pub fn new(store: Store, limit: u32, window: Duration) -> Self {
        Self { store, limit, window }
    }

    /// Counts a password check of `email` BEFORE it runs, and refuses it (RateLimited) past the
    /// limit. Counting first means parallel guesses cannot all pass a read-only check: at most
    /// `limit` checks run per window, whatever the concurrency. A success resets the count
    /// ([`Self::succeeded`]), so only failures accumulate.
    pub async fn attempt(&self, email: &Email) -> Result<(), ServiceError> {
        let key = store::login_failures_key(email);
        let count = self
            .store
            .cache()
            .increment(&key, self.window)
            .await
            .map_err(store::unavailable)?;
        if count > i64::from(self.limit) {
            return Err(ServiceError::RateLimited {
                retry_after: self.store.retry_after(&key, self.window).await,
            });
        }
        Ok(())
    }

    /// Forgets the failures after a successful check.
    pub async fn succeeded(&self, email: &Email) -> Result<(), ServiceError> {
        self.store
            .cache()
            .delete(&store::login_failures_key(email))
            .await
            .map_err(store::unavailable)?;
        Ok(())
    }
}
