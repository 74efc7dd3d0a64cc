//! The cache contract, run against both adapters: Redis on loopback and the in-process map.
//! Each test gets its own key prefix, so tests run in parallel against one Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use shop_platform::{cache::Cache, testing};

async fn ttl_expires_keys(cache: Arc<dyn Cache>) {
    cache.set("code", b"123456", Duration::from_millis(300)).await.unwrap();
    assert_eq!(cache.get("code").await.unwrap().as_deref(), Some(&b"123456"[..]));
    assert!(cache.exists("code").await.unwrap());
    let left = cache.time_to_live("code").await.unwrap().unwrap();
    assert!(left <= Duration::from_millis(300) && left > Duration::ZERO, "{left:?}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(cache.get("code").await.unwrap(), None);
    assert!(!cache.exists("code").await.unwrap());
    assert_eq!(cache.time_to_live("code").await.unwrap(), None);
}

async fn set_replaces_and_delete_removes(cache: Arc<dyn Cache>) {
    let ttl = Duration::from_secs(30);
    cache.set("k", b"one", ttl).await.unwrap();
    cache.set("k", b"two", ttl).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"two"[..]));
    assert!(cache.delete("k").await.unwrap());
    assert!(!cache.delete("k").await.unwrap());
    assert_eq!(cache.get("k").await.unwrap(), None);
}

async fn set_if_absent_stores_once(cache: Arc<dyn Cache>) {
    let ttl = Duration::from_secs(30);
    assert!(cache.set_if_absent("lock", b"a", ttl).await.unwrap());
    assert!(!cache.set_if_absent("lock", b"b", ttl).await.unwrap());
    assert_eq!(cache.get("lock").await.unwrap().as_deref(), Some(&b"a"[..]));
    // Once expired, the key is absent again.
    cache.set("short", b"x", Duration::from_millis(100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cache.set_if_absent("short", b"y", ttl).await.unwrap());
}

async fn take_reads_once(cache: Arc<dyn Cache>) {
    cache.set("token", b"t", Duration::from_secs(30)).await.unwrap();
    // Ten concurrent takers: exactly one gets the value.
    let takers: Vec<_> = (0..10)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.take("token").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for taker in takers {
        if taker.await.unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(cache.get("token").await.unwrap(), None);
}

async fn increment_counts_atomically_in_a_fixed_window(cache: Arc<dyn Cache>) {
    let window = Duration::from_millis(600);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.increment("hits", window).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=50).collect::<Vec<i64>>(), "every increment is counted once");
    // Later increments keep the first expiry: the window does not slide.
    let left = cache.time_to_live("hits").await.unwrap().unwrap();
    assert!(left <= window);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.increment("hits", window).await.unwrap(), 51);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(cache.increment("hits", window).await.unwrap(), 1, "a new window starts");
}

async fn counters_are_added_to_in_batches(cache: Arc<dyn Cache>) {
    let window = Duration::from_millis(600);
    let batch = |a: i64, b: i64| vec![("a".to_owned(), a), ("b".to_owned(), b)];
    let counted = cache.add_to_counters(&batch(5, 1), window).await.unwrap();
    assert_eq!(counted.iter().map(|c| c.count).collect::<Vec<_>>(), [5, 1]);
    assert!(
        counted.iter().all(|c| c.ttl.is_some_and(|left| left <= window)),
        "{counted:?}"
    );
    // Batches and single increments count into the same counters, concurrently.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.add_to_counters(&batch(2, 0), window).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(cache.increment("a", window).await.unwrap(), 46);
    let counted = cache.add_to_counters(&batch(0, 0), window).await.unwrap();
    assert_eq!(counted.iter().map(|c| c.count).collect::<Vec<_>>(), [46, 1]);
    assert!(cache.add_to_counters(&[], window).await.unwrap().is_empty());
    // The window is fixed from the first addition, then a new one starts.
    tokio::time::sleep(Duration::from_millis(650)).await;
    let counted = cache.add_to_counters(&batch(3, 0), window).await.unwrap();
    assert_eq!(counted[0].count, 3, "a new window starts");
}

async fn prefixes_keep_namespaces_apart(first: Arc<dyn Cache>, second: Arc<dyn Cache>) {
    first.set("shared", b"first", Duration::from_secs(30)).await.unwrap();
    assert_eq!(second.get("shared").await.unwrap(), None);
    second.set("shared", b"second", Duration::from_secs(30)).await.unwrap();
    assert_eq!(first.get("shared").await.unwrap().as_deref(), Some(&b"first"[..]));
}

async fn is_ready(cache: Arc<dyn Cache>) {
    assert!(cache.ready().await);
}

macro_rules! contract {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            async fn open() -> Arc<dyn Cache> {
                testing::init_test_logging();
                let open: fn(String) -> _ = $open;
                open(format!("{}:", testing::unique_name("test"))).await
            }

            #[tokio::test]
            async fn ttl_expires_keys() {
                super::ttl_expires_keys(open().await).await;
            }

            #[tokio::test]
            async fn set_replaces_and_delete_removes() {
                super::set_replaces_and_delete_removes(open().await).await;
            }

            #[tokio::test]
            async fn set_if_absent_stores_once() {
                super::set_if_absent_stores_once(open().await).await;
            }

            #[tokio::test]
            async fn take_reads_once() {
                super::take_reads_once(open().await).await;
            }

            #[tokio::test]
            async fn increment_counts_atomically_in_a_fixed_window() {
                super::increment_counts_atomically_in_a_fixed_window(open().await).await;
            }

            #[tokio::test]
            async fn counters_are_added_to_in_batches() {
                super::counters_are_added_to_in_batches(open().await).await;
            }

            #[tokio::test]
            async fn prefixes_keep_namespaces_apart() {
                super::prefixes_keep_namespaces_apart(open().await, open().await).await;
            }

            #[tokio::test]
            async fn is_ready() {
                super::is_ready(open().await).await;
            }
        }
    };
}

contract!(memory, |prefix| async move {
    // Both views share one map, as two services in one process would.
    static SHARED: std::sync::LazyLock<shop_platform::cache::MemoryCache> =
        std::sync::LazyLock::new(|| shop_platform::cache::MemoryCache::new(""));
    Arc::new(SHARED.with_prefix(&prefix)) as Arc<dyn Cache>
});

contract!(redis, |prefix| async move {
    shop_platform::cache::from_url(&testing::redis_url(), &prefix)
        .await
        .expect("Redis on loopback must answer")
});

#[tokio::test]
async fn unknown_schemes_are_refused() {
    assert!(shop_platform::cache::from_url("memcached://x", "p").await.is_err());
}

#[tokio::test]
async fn a_dead_redis_fails_fast_instead_of_hanging() {
    let started = std::time::Instant::now();
    let result = shop_platform::cache::from_url("redis://127.0.0.1:1", "p").await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A batch of counters is one command to Redis, so one write and one round trip whatever its
/// size: `MONITOR` (another connection, watching every client) sees the client send EVALSHA
/// naming the batch's keys and nothing else for them; the script's own INCRBYs run inside
/// Redis. A `MULTI` sent MULTI, then INCRBY, PEXPIRE and PTTL per counter, then EXEC: a write
/// each.
#[tokio::test]
async fn a_batch_of_counters_is_one_command_to_redis() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

    let prefix = testing::unique_name("batch");
    let cache = shop_platform::cache::from_url(&testing::redis_url(), &prefix)
        .await
        .expect("Redis on loopback must answer");
    let window = Duration::from_secs(60);
    // Once first, so the server knows the script (one that does not loads it, once).
    cache.add_to_counters(&[("warm".to_owned(), 1)], window).await.unwrap();

    let url = url::Url::parse(&testing::redis_url()).unwrap();
    let address = (url.host_str().unwrap().to_owned(), url.port().unwrap_or(6379));
    let mut monitor = tokio::io::BufReader::new(tokio::net::TcpStream::connect(address).await.unwrap());
    monitor.get_mut().write_all(b"MONITOR\r\n").await.unwrap();
    let mut line = String::new();
    monitor.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim_end(), "+OK");

    let deltas: Vec<(String, i64)> = (0..20).map(|i| (format!("counter-{i}"), i + 1)).collect();
    let counted = cache.add_to_counters(&deltas, window).await.unwrap();
    assert_eq!(
        counted.iter().map(|counted| counted.count).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert!(
        counted
            .iter()
            .all(|counted| counted.ttl.is_some_and(|ttl| ttl <= window))
    );

    // The client's commands naming this batch's keys, until the last key's PTTL (run by the
    // script, or sent by the client) shows the batch is done.
    let last_key = format!("\"{prefix}counter-19\"");
    let mut sent = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(Duration::from_secs(5), monitor.read_line(&mut line))
            .await
            .expect("MONITOR shows the batch")
            .unwrap();
        assert!(read > 0, "MONITOR connection closed");
        if !line.contains(&prefix) {
            continue;
        }
        // `+<time> [<db> <client address>] "COMMAND" …`; a script's calls show `lua`.
        let command = line.split("] ").nth(1).unwrap_or_default().to_owned();
        if !line.contains(" lua]") {
            sent.push(command.split(' ').next().unwrap_or_default().to_lowercase());
        }
        if command.to_lowercase().starts_with("\"pttl\"") && line.contains(&last_key) {
            break;
        }
    }
    assert_eq!(sent, ["\"evalsha\""], "commands the client sent for 20 counters");
}
