//! The in-process cache: a map with deadlines, for the single-process run and for tests of the
//! cache contract. Expired entries are dropped lazily on access and swept as the map grows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Cache, CacheError, Counted};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

/// An in-process [`Cache`]. Clones share one map; the prefix keeps namespaces apart.
#[derive(Clone, Debug)]
pub struct MemoryCache {
    prefix: String,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl MemoryCache {
    /// An empty cache with keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            entries: Arc::default(),
        }
    }

    /// A view of the same map under another prefix.
    pub fn with_prefix(&self, prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            entries: Arc::clone(&self.entries),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Locks the map, dropping expired entries of `key` first. A poisoned lock only means a
    /// panic elsewhere mid-update of a plain map; the data is still consistent.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn live<'a>(map: &'a mut HashMap<String, Entry>, key: &str, now: Instant) -> Option<&'a mut Entry> {
        if map.get(key).is_some_and(|entry| entry.expires_at <= now) {
            map.remove(key);
        }
        map.get_mut(key)
    }

    fn insert(map: &mut HashMap<String, Entry>, key: String, value: Vec<u8>, ttl: Duration, now: Instant) {
        // Sweep once the map has grown, so abandoned keys do not pile up.
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, entry| entry.expires_at > now);
        }
        map.insert(
            key,
            Entry {
                value,
                expires_at: now + ttl.max(Duration::from_millis(1)),
            },
        );
    }
}

/// The integer a counter holds.
fn counter_value(key: &str, value: &[u8]) -> Result<i64, CacheError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| CacheError::Unavailable(format!("{key} does not hold an integer")))
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut map = self.lock();
        Ok(Self::live(&mut map, &self.key(key), Instant::now()).map(|entry| entry.value.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut map = self.lock();
        Self::insert(&mut map, self.key(key), value.to_vec(), ttl, Instant::now());
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let (key, now) = (self.key(key), Instant::now());
        let mut map = self.lock();
        if Self::live(&mut map, &key, now).is_some() {
            return Ok(false);
        }
        Self::insert(&mut map, key, value.to_vec(), ttl, now);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let key = self.key(key);
        let mut map = self.lock();
        Ok(Self::live(&mut map, &key, Instant::now()).is_some() && map.remove(&key).is_some())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let key = self.key(key);
        let mut map = self.lock();
        if Self::live(&mut map, &key, Instant::now()).is_none() {
            return Ok(None);
        }
        Ok(map.remove(&key).map(|entry| entry.value))
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let (key, now) = (self.key(key), Instant::now());
        let mut map = self.lock();
        if let Some(entry) = Self::live(&mut map, &key, now) {
            let current = counter_value(&key, &entry.value)?;
            let next = current.saturating_add(1);
            entry.value = next.to_string().into_bytes();
            return Ok(next);
        }
        Self::insert(&mut map, key, b"1".to_vec(), ttl, now);
        Ok(1)
    }

    async fn add_to_counters(&self, deltas: &[(String, i64)], ttl: Duration) -> Result<Vec<Counted>, CacheError> {
        let now = Instant::now();
        let mut map = self.lock();
        deltas
            .iter()
            .map(|(key, delta)| {
                let key = self.key(key);
                let count = match Self::live(&mut map, &key, now) {
                    Some(entry) => {
                        let count = counter_value(&key, &entry.value)?.saturating_add(*delta);
                        entry.value = count.to_string().into_bytes();
                        count
                    }
                    None => {
                        Self::insert(&mut map, key.clone(), delta.to_string().into_bytes(), ttl, now);
                        *delta
                    }
                };
                let ttl = Self::live(&mut map, &key, now).map(|entry| entry.expires_at - now);
                Ok(Counted { count, ttl })
            })
            .collect()
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        let mut map = self.lock();
        Ok(Self::live(&mut map, &self.key(key), Instant::now()).is_some())
    }

    async fn time_to_live(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let now = Instant::now();
        let mut map = self.lock();
        Ok(Self::live(&mut map, &self.key(key), now).map(|entry| entry.expires_at - now))
    }

    async fn ready(&self) -> bool {
        true
    }
}
