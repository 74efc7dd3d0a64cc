//! Fixed-window counters shared by every replica through the cache, decided in the process.
//!
//! Counting each event with its own round trip to Redis puts a transaction on the path of
//! every request. Here each process keeps, per key, the cluster-wide count it last read back
//! and the events it admitted since, and a background task sends what accumulated in ONE batch
//! ([`Cache::add_to_counters`]) as soon as the previous batch is back: one round trip per batch,
//! not per event, and under light load every event reaches the cache within a round trip.
//!
//! An event is decided without the cache while the process's unsent events stay within a
//! QUARTER of what it last saw remaining of the limit (never the last eight events of a
//! limit), and that view is younger than the
//! freshness bound; otherwise (near the limit, a key not seen for a while) it is counted in the
//! cache first and decided on the count that comes back, so the last events before the limit
//! are counted exactly. An event over the limit as the process sees it is refused at once,
//! without waiting for a sync. What replicas admit between two syncs of theirs is what can pass
//! beyond the limit: at most the events the other replicas admit during one round trip to the
//! cache, and never more than a quarter of what each last saw remaining.
//!
//! When the cache fails, events are let through (fail open) and the cache is left alone for a
//! second, so an outage costs no time on every event.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, Once, Weak},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Cache, Counted};

/// The last events before a limit, always counted in the cache before they are decided.
const EXACT_TAIL: i64 = 8;

/// How long a failed cache is left alone before it is tried again.
const BACKOFF: Duration = Duration::from_secs(1);

/// What [`WindowCounters::hit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Within,
    /// Over the limit until the window ends, `retry_after` from now.
    Over {
        /// The time the window has left.
        retry_after: Duration,
    },
    /// The cache is unavailable: not counted, let through.
    Unchecked,
}

/// One key as this process knows it.
#[derive(Debug)]
struct Key {
    /// The cluster-wide count last read back (this process's sent events included).
    shared: i64,
    /// Events admitted here and not yet sent.
    pending: i64,
    /// Events sent and not yet read back.
    in_flight: i64,
    /// When `shared` was read (`None`: never in this window).
    read_at: Option<Instant>,
    /// When the window ends.
    window_ends: Instant,
}

impl Key {
    fn new(now: Instant, window: Duration) -> Self {
        Self {
            shared: 0,
            pending: 0,
            in_flight: 0,
            read_at: None,
            window_ends: now + window,
        }
    }

    /// Takes in a count read back at `now`.
    fn read_back(&mut self, counted: Counted, sent: i64, now: Instant, window: Duration) {
        self.in_flight -= sent;
        let ends = now + counted.ttl.unwrap_or(window);
        // A window later than the one known (the key expired and was created again): its count
        // replaces the old one; otherwise counts only grow within a window, and of two replies
        // in either order the larger is the later.
        if self.read_at.is_none() || ends > self.window_ends + Duration::from_millis(500) {
            self.shared = counted.count;
            self.window_ends = ends;
        } else {
            self.shared = self.shared.max(counted.count);
        }
        self.read_at = Some(now);
    }
}

/// Every key this process counts, and which have events to send.
#[derive(Debug)]
struct Table {
    keys: HashMap<String, Key>,
    /// Keys with pending events, so a batch is made without visiting every key.
    dirty: Vec<String>,
    /// When keys whose window ended were last forgotten.
    swept_at: Instant,
}

#[derive(Debug)]
struct Inner {
    cache: Arc<dyn Cache>,
    window: Duration,
    fresh_for: Duration,
    table: Mutex<Table>,
    /// Set when events wait to be sent.
    dirty: Arc<Notify>,
    /// Until when the cache is left alone after a failure.
    down_until: Mutex<Option<Instant>>,
    /// The sending task starts at the first event (in the runtime) and stops with the counters.
    started: Once,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

/// Counters of events per key in fixed windows, shared through a cache (see the module).
#[derive(Clone, Debug)]
pub struct WindowCounters {
    inner: Arc<Inner>,
}

impl WindowCounters {
    /// Counters in windows of `window` counted in `cache`; an event of a key whose view is
    /// older than `fresh_for` is counted in the cache before it is decided.
    pub fn new(cache: Arc<dyn Cache>, window: Duration, fresh_for: Duration) -> Self {
        let stop = CancellationToken::new();
        Self {
            inner: Arc::new(Inner {
                cache,
                window,
                fresh_for,
                table: Mutex::new(Table {
                    keys: HashMap::new(),
                    dirty: Vec::new(),
                    swept_at: Instant::now(),
                }),
                dirty: Arc::default(),
                down_until: Mutex::default(),
                started: Once::new(),
                stop: stop.clone(),
                _stop_on_drop: stop.drop_guard(),
            }),
        }
    }

    /// The cache the counts are kept in.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.inner.cache
    }

    /// Counts one event of `key`, allowed up to `limit` a window.
    pub async fn hit(&self, key: &str, limit: i64) -> Verdict {
        let inner = &self.inner;
        let now = Instant::now();
        if lock(&inner.down_until).is_some_and(|until| now < until) {
            return Verdict::Unchecked;
        }
        let sent = {
            let mut table = lock(&inner.table);
            let Table { keys, dirty, .. } = &mut *table;
            if !keys.contains_key(key) {
                keys.insert(key.to_owned(), Key::new(now, inner.window));
            }
            let Some(state) = keys.get_mut(key) else {
                unreachable!("inserted above")
            };
            if now >= state.window_ends {
                // A new window: what was left unsent belonged to the old one.
                *state = Key {
                    in_flight: state.in_flight,
                    ..Key::new(now, inner.window)
                };
            }
            let unsent = state.pending + state.in_flight;
            let fresh = state.read_at.is_some_and(|at| now < at + inner.fresh_for);
            if fresh && state.shared + unsent >= limit {
                return Verdict::Over {
                    retry_after: state.window_ends - now,
                };
            }
            // A quarter, not all, of what was left, and never the last few: the other
            // replicas' latest events may not be in the view yet (sent, or waiting for their
            // own batch).
            let left = (limit - state.shared - EXACT_TAIL).max(0);
            let allowance = if fresh { left / 4 } else { 0 };
            if unsent < allowance {
                if state.pending == 0 {
                    dirty.push(key.to_owned());
                }
                state.pending += 1;
                drop(table);
                self.start_sending();
                inner.dirty.notify_one();
                return Verdict::Within;
            }
            // Near the limit, or a view too old: counted in the cache first, with what waits.
            let sent = state.pending + 1;
            state.pending = 0;
            state.in_flight += sent;
            sent
        };
        let batch = [(key.to_owned(), sent)];
        let counted = inner.cache.add_to_counters(&batch, inner.window).await;
        let now = Instant::now();
        match counted.as_deref() {
            Ok([counted]) => {
                if let Some(state) = lock(&inner.table).keys.get_mut(key) {
                    state.read_back(*counted, sent, now, inner.window);
                }
                if counted.count > limit {
                    Verdict::Over {
                        retry_after: counted.ttl.unwrap_or(inner.window),
                    }
                } else {
                    Verdict::Within
                }
            }
            _ => {
                if let Some(state) = lock(&inner.table).keys.get_mut(key) {
                    state.in_flight -= sent;
                }
                inner.failed(
                    counted
                        .as_ref()
                        .err()
                        .map_or_else(|| "no count read back".to_owned(), |e| e.to_string()),
                );
                Verdict::Unchecked
            }
        }
    }

    fn start_sending(&self) {
        self.inner.started.call_once(|| {
            let (weak, dirty) = (Arc::downgrade(&self.inner), Arc::clone(&self.inner.dirty));
            let stop = self.inner.stop.clone();
            tokio::spawn(async move { stop.run_until_cancelled(send_batches(weak, dirty)).await });
        });
    }
}

impl Inner {
    /// Notes a failure of the cache: let everything through for a while.
    fn failed(&self, error: String) {
        tracing::warn!(%error, "shared counters unavailable; letting events through for {BACKOFF:?}");
        *lock(&self.down_until) = Some(Instant::now() + BACKOFF);
    }

    /// Takes every key's unsent events as one batch; now and then forgets keys whose window
    /// ended.
    fn take_batch(&self) -> Vec<(String, i64)> {
        let now = Instant::now();
        let mut table = lock(&self.table);
        if now >= table.swept_at + self.window {
            table.swept_at = now;
            table
                .keys
                .retain(|_, state| state.window_ends > now || state.pending + state.in_flight > 0);
        }
        let Table { keys, dirty, .. } = &mut *table;
        dirty
            .drain(..)
            .filter_map(|key| {
                let state = keys.get_mut(&key)?;
                let sent = std::mem::take(&mut state.pending);
                state.in_flight += sent;
                (sent > 0).then_some((key, sent))
            })
            .collect()
    }
}

/// Sends the accumulated events, one batch at a time, as long as the counters exist (the task
/// holds them only while it sends, so dropping them stops it).
async fn send_batches(counters: Weak<Inner>, dirty: Arc<Notify>) {
    loop {
        dirty.notified().await;
        let Some(inner) = counters.upgrade() else { return };
        let batch = inner.take_batch();
        if batch.is_empty() {
            continue;
        }
        let counted = inner.cache.add_to_counters(&batch, inner.window).await;
        let now = Instant::now();
        let mut table = lock(&inner.table);
        let keys = &mut table.keys;
        match counted {
            Ok(counted) if counted.len() == batch.len() => {
                for ((key, sent), counted) in batch.iter().zip(counted) {
                    if let Some(state) = keys.get_mut(key) {
                        state.read_back(counted, *sent, now, inner.window);
                    }
                }
            }
            other => {
                for (key, sent) in &batch {
                    if let Some(state) = keys.get_mut(key) {
                        state.in_flight -= sent;
                    }
                }
                drop(table);
                inner.failed(
                    other
                        .err()
                        .map_or_else(|| "counts missing".to_owned(), |e| e.to_string()),
                );
            }
        }
    }
}

/// Locks `mutex`; a poisoned lock only means a panic elsewhere mid-update of plain numbers.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
