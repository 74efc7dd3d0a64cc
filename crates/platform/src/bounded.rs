//! A bounded map shared by the threads of one process, for answers worth remembering a short
//! while: the mesh tokens a member minted (reused while young) and verified (believed until
//! they expire), the gateway's token-revocation answers, the order service's recent catalog
//! answers. Each entry says through its reader whether it is still usable; the map never grows
//! past its capacity.

use std::{
    borrow::Borrow,
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{Mutex, PoisonError},
};

/// The usual capacity. Each entry is at most a few KB (a mesh token or two), so a full map
/// stays in the tens of megabytes at worst.
pub const CAPACITY: usize = 10_000;

/// A map of at most `capacity` entries. When it is full, the entries no longer usable are
/// dropped; if more than half of it is still usable, all of it is (a cache refills on demand,
/// and each sweep is paid for by at least `capacity / 2` inserts before the next).
pub struct BoundedCache<K, V> {
    entries: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K, V> fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, V: Clone> BoundedCache<K, V> {
    /// An empty map of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::default(),
            capacity,
        }
    }

    /// The value of `key`, if there is one and `usable` accepts it.
    pub fn get<Q>(&self, key: &Q, usable: impl FnOnce(&V) -> bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).filter(|value| usable(value)).cloned()
    }

    /// Remembers `value` for `key`; `usable` tells which entries to keep when the map is full.
    pub fn insert(&self, key: K, value: V, usable: impl Fn(&V) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, value| usable(value));
            if entries.len() > self.capacity / 2 {
                entries.clear();
            }
        }
        entries.insert(key, value);
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, value| keep(value));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_drops_the_unusable_entries_or_else_everything() {
        let cache = BoundedCache::new(4);
        for key in 0..4 {
            cache.insert(key, key, |_| true);
        }
        // Two of the four are stale: they make room, the usable ones stay.
        cache.insert(4, 4, |value| *value >= 2);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&2, |_| true), Some(2));
        assert_eq!(cache.get(&0, |_| true), None);
        // Full again with every entry usable: it starts over rather than sweep at every insert.
        cache.insert(5, 5, |_| true);
        cache.insert(6, 6, |_| true);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&6, |_| true), Some(6));
        // An entry its reader refuses is not returned.
        assert_eq!(cache.get(&6, |_| false), None);
    }
}
