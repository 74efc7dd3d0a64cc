//! Memory after a burst: a flood of sign-ins with random addresses (each runs a 19 MiB argon2
//! hash) against the one-process binary stays within the hashing budget while it lasts, the
//! health endpoint keeps answering, and the memory goes back to the system afterwards (with
//! glibc's allocator the process kept over a gigabyte while idle).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::json;

use crate::stack::Stack;

/// Sign-ins in the flood, and how many are in flight at once.
const SIGN_INS: usize = 160;
const CONCURRENT: usize = 32;
/// Most the process may grow while hashing: the user service's hashing budget (128 MiB by
/// default) and the requests around it.
const BURST_ALLOWANCE_MB: u64 = 250;
/// Most the process may keep, above where it started, once the flood is over.
const KEPT_MB: u64 = 40;

/// The resident set of `pid`, in MiB.
fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb / 1024
}

#[tokio::test]
async fn a_sign_in_flood_stays_within_budget_and_its_memory_goes_back() {
    let stack = Stack::one_process().await;
    let pid = stack.pid("shop");
    // Settled: one round of sign-ins first, so lazily built state is not counted as kept.
    for _ in 0..4 {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let reply = stack
            .api
            .post("/auth/login", &json!({"email": email, "password": "Wrong-pass-1"}))
            .send()
            .await;
        assert_eq!(reply.status, 401, "{reply:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_mb(pid);

    let done = std::cell::Cell::new(false);
    let flood = async {
        let attempts = futures::stream::iter(0..SIGN_INS).map(|_| {
            let api = &stack.api;
            async move {
                let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
                api.post("/auth/login", &json!({"email": email, "password": "Wrong-pass-1"}))
                    .send()
                    .await
                    .status
            }
        });
        let statuses: Vec<_> = attempts.buffer_unordered(CONCURRENT).collect().await;
        done.set(true);
        statuses
    };
    let watch = async {
        // While the flood lasts: the peak, and the slowest health answer.
        let (mut peak, mut slowest) = (idle, Duration::ZERO);
        while !done.get() {
            let started = Instant::now();
            let health = stack.api.at(reqwest::Method::GET, "/healthz").send().await;
            assert_eq!(health.status, 200, "{health:?}");
            slowest = slowest.max(started.elapsed());
            peak = peak.max(rss_mb(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (peak, slowest)
    };
    let (statuses, (peak, slowest)) = tokio::join!(flood, watch);
    // Every attempt was answered: 401 for the unknown address, or 503 when hashing was full.
    assert!(
        statuses.iter().all(|status| *status == 401 || *status == 503),
        "{statuses:?}"
    );
    assert!(
        peak <= idle + BURST_ALLOWANCE_MB,
        "grew from {idle} MiB to {peak} MiB during the flood"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "/healthz took {slowest:?} during the flood"
    );

    // Within a few seconds the memory is back near where it started.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = rss_mb(pid);
        if now <= idle + KEPT_MB {
            println!("idle {idle} MiB, peak {peak} MiB during the flood, {now} MiB after it");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "idle at {idle} MiB, peak {peak} MiB, still {now} MiB after the flood"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
