//! The cache: short-lived keys with a TTL (verification codes, rate-limit counters, revoked
//! token ids). One trait, two adapters obeying one contract: Redis through `fred`
//! (`redis://…`) and in-process (`memory://`), proven by the same test suite. Every instance
//! carries a key prefix so services, and tests, never see each other's keys.

pub mod counters;
mod memory;
mod redis;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;

pub use memory::MemoryCache;
pub use redis::RedisCache;

/// What can go wrong with the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The server could not be reached or answered with an error.
    #[error("the cache is unavailable: {0}")]
    Unavailable(String),
    /// The URL names no cache this build knows.
    #[error("unsupported cache URL: {0}")]
    BadUrl(String),
}

/// A counter as [`Cache::add_to_counters`] left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// The counter's value.
    pub count: i64,
    /// The time its window has left (`None` only for a counter without an expiry).
    pub ttl: Option<Duration>,
}

/// A key-value cache with expiry. Keys are relative to the instance's prefix.
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug {
    /// The value of `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;

    /// Stores `value` only if `key` is absent; `true` if it was stored.
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError>;

    /// Removes `key`; `true` if it existed.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    /// Reads and removes `key` in one step, so a value (a single-use token) is taken once.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Adds one to the counter at `key` and returns the new value; a counter created by this
    /// call expires after `ttl` (later increments keep that expiry: a fixed window).
    async fn increment(&self, key: &str, ttl: Duration) -> Result<i64, CacheError>;

    /// Adds each delta to its counter in one round trip (one transaction for Redis) and returns
    /// every counter after it, in order, with the time its window has left. A counter created by
    /// this call expires after `ttl`, as with [`Cache::increment`]: a fixed window. This is how
    /// counts kept in a process are reconciled with the shared cache in batches, instead of one
    /// round trip per event.
    async fn add_to_counters(&self, deltas: &[(String, i64)], ttl: Duration) -> Result<Vec<Counted>, CacheError>;

    /// Whether `key` is present.
    async fn exists(&self, key: &str) -> Result<bool, CacheError>;

    /// The time `key` has left, if it exists and expires.
    async fn time_to_live(&self, key: &str) -> Result<Option<Duration>, CacheError>;

    /// Whether the cache answers now (for readiness probes).
    async fn ready(&self) -> bool;
}

/// Opens the cache a URL names, with every key under `prefix`: `redis://…`/`rediss://…` or
/// `memory://`.
pub async fn from_url(url: &str, prefix: &str) -> Result<Arc<dyn Cache>, CacheError> {
    if url.starts_with("memory:") {
        Ok(Arc::new(MemoryCache::new(prefix)))
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(RedisCache::connect(url, prefix).await?))
    } else {
        Err(CacheError::BadUrl(crate::config::redact_url(url)))
    }
}

/// Milliseconds of `ttl`, at least 1 (a zero TTL would mean "never expires" to some servers).
fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}
