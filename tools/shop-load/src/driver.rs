//! Offering the load: a closed loop (a fixed number of connections, each sending its next
//! request when the previous one is answered) or an open loop (requests at a fixed rate,
//! whatever the answers do, each timed from when it was due so a slow system cannot hide its
//! queueing: no coordinated omission). Either stops after a duration or a number of steps.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Semaphore, task::JoinSet, time::Instant};

/// What one load run does: one step (one or a few requests) at a time, each by a user.
pub trait Workload: Send + Sync + 'static {
    /// What a user carries between its steps (an account, a cart); `()` when nothing.
    type User: Send + 'static;

    /// Step number `seq`, due at `intended`, by `user`: sends its requests and records them,
    /// the first one's latency counted from `intended`.
    fn step(&self, user: &mut Self::User, seq: u64, intended: Instant) -> impl Future<Output = ()> + Send;
}

/// How the load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each user sends its next step when the previous one is done.
    Closed,
    /// Steps start at this many per second; each waits for a free user (the users bound the
    /// requests in flight), and that wait counts in its latency.
    Open {
        /// Steps per second.
        rate: f64,
    },
}

/// When the load stops: after `duration`, after `steps` steps, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    /// The longest the load runs.
    pub duration: Option<Duration>,
    /// The most steps started.
    pub steps: Option<u64>,
}

/// Runs `workload` with `users` (one per connection) at `pace` until `limit`; returns the time
/// from the first step's start to the last step's end.
pub async fn run<W: Workload>(workload: Arc<W>, users: Vec<W::User>, pace: Pace, limit: Limit) -> Duration {
    let start = Instant::now();
    let deadline = limit.duration.map(|duration| start + duration);
    let due = move |seq: u64| -> Option<Instant> {
        let at = match pace {
            Pace::Closed => Instant::now(),
            Pace::Open { rate } => start + Duration::from_secs_f64(seq as f64 / rate),
        };
        let over = limit.steps.is_some_and(|steps| seq >= steps) || deadline.is_some_and(|deadline| at >= deadline);
        (!over).then_some(at)
    };
    let mut tasks = JoinSet::new();
    match pace {
        Pace::Closed => {
            let next = Arc::new(AtomicU64::new(0));
            for mut user in users {
                let (workload, next) = (Arc::clone(&workload), Arc::clone(&next));
                tasks.spawn(async move {
                    loop {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        let Some(intended) = due(seq) else { break };
                        workload.step(&mut user, seq, intended).await;
                    }
                });
            }
        }
        Pace::Open { .. } => {
            let free = Arc::new(Semaphore::new(users.len()));
            let pool = Arc::new(Mutex::new(users));
            let mut seq = 0;
            while let Some(intended) = due(seq) {
                tokio::time::sleep_until(intended).await;
                let (workload, free, pool) = (Arc::clone(&workload), Arc::clone(&free), Arc::clone(&pool));
                tasks.spawn(async move {
                    let Ok(_permit) = free.acquire().await else { return };
                    let taken = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
                    if let Some(mut user) = taken {
                        workload.step(&mut user, seq, intended).await;
                        pool.lock().unwrap_or_else(PoisonError::into_inner).push(user);
                    }
                });
                // Finished steps are reaped as we go, so a long run holds only those in flight.
                while tasks.try_join_next().is_some() {}
                seq += 1;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    start.elapsed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Records each step's number, its lateness and which user ran it; each step takes `took`.
    struct Probe {
        took: Duration,
        steps: Mutex<Vec<(u64, Duration)>>,
    }

    impl Workload for Probe {
        type User = usize;

        async fn step(&self, _user: &mut usize, seq: u64, intended: Instant) {
            tokio::time::sleep(self.took).await;
            self.steps.lock().unwrap().push((seq, intended.elapsed()));
        }
    }

    fn probe(took: Duration) -> Arc<Probe> {
        Arc::new(Probe {
            took,
            steps: Mutex::default(),
        })
    }

    #[tokio::test]
    async fn a_closed_loop_runs_every_user_back_to_back_until_the_step_count() {
        let workload = probe(Duration::from_millis(10));
        let limit = Limit {
            steps: Some(40),
            ..Limit::default()
        };
        let elapsed = run(Arc::clone(&workload), vec![0, 1, 2, 3], Pace::Closed, limit).await;
        let steps = workload.steps.lock().unwrap();
        let mut seqs: Vec<u64> = steps.iter().map(|(seq, _)| *seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..40).collect::<Vec<_>>());
        // Four at a time: ten rounds of 10 ms.
        assert!(
            elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(400),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn an_open_loop_keeps_its_rate_and_counts_the_wait_for_a_user_in_the_latency() {
        // 100 steps a second for 0.3 s, each taking 50 ms, with two users: they do only 40 a
        // second, so steps queue, and their latency grows with the queue.
        let workload = probe(Duration::from_millis(50));
        let limit = Limit {
            duration: Some(Duration::from_millis(300)),
            ..Limit::default()
        };
        let elapsed = run(Arc::clone(&workload), vec![0, 1], Pace::Open { rate: 100.0 }, limit).await;
        let steps = workload.steps.lock().unwrap();
        assert_eq!(steps.len(), 30);
        // 30 steps by two users at 50 ms each: 750 ms.
        assert!(
            elapsed >= Duration::from_millis(750) && elapsed < Duration::from_millis(1_500),
            "{elapsed:?}"
        );
        // The last step was due at 0.29 s and ended at 0.75 s or later: its latency counts
        // the wait, not only its own 50 ms.
        let worst = steps.iter().map(|(_, latency)| *latency).max().unwrap();
        assert!(worst >= Duration::from_millis(450), "{worst:?}");
    }
}
