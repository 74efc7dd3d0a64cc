//! Slows password guessing down: failed password checks on one address are counted in the cache
//! over a fixed window; past the limit, every password check for that address is refused with
//! RESOURCE_EXHAUSTED until the window ends, before any hashing. Unknown addresses are counted
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

    /// RateLimited while `email` is over its failure limit.
    pub async fn check(&self, email: &Email) -> Result<(), ServiceError> {
        let key = store::login_failures_key(email);
        let failures = self.store.cache().get(&key).await.map_err(store::unavailable)?;
        let count = failures
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0);
        if count >= u64::from(self.limit) {
            return Err(ServiceError::RateLimited {
                retry_after: self.store.retry_after(&key, self.window).await,
            });
        }
        Ok(())
    }

    /// Records a failed check.
    pub async fn failed(&self, email: &Email) -> Result<(), ServiceError> {
        self.store
            .cache()
            .increment(&store::login_failures_key(email), self.window)
            .await
            .map_err(store::unavailable)?;
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
