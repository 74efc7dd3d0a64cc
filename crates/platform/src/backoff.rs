//! Capped exponential backoff with jitter: the one pause policy of every retry loop in shop
//! (broker reconnects, gRPC retries of unprocessed calls, the outbox relay, queue consumers
//! waiting out an outage, the payment and reconciliation workers).
//!
//! Each pause is drawn from the upper half of the current step ("equal jitter": between half
//! the step and the step), and the step doubles from `first` up to `max`. Half a step is
//! always waited, so a retry loop never spins; the random other half keeps replicas that failed
//! together from retrying together.

use std::time::Duration;

use rand::Rng as _;
use tokio_util::sync::CancellationToken;

/// A pause policy, and where a retry loop stands in it.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: bool,
    failures: u32,
}

impl Backoff {
    /// Pauses doubling from `first` up to `max` (`max` is raised to `first` if lower).
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            jitter: true,
            failures: 0,
        }
    }

    /// The same policy with exact pauses (the step itself, no random part): for callers whose
    /// pauses are too short for jitter to matter, and for tests.
    #[must_use]
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// Failures recorded since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The step after `failures` failures: `first × 2^(failures-1)`, at most `max`.
    fn step(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1_u32 << doublings).min(self.max)
    }

    /// Records a failure and returns how long to pause before the next attempt.
    pub fn next_pause(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.pause_after(self.failures)
    }

    /// The pause after the `failures`-th failure in a row, for retry loops that keep their
    /// failure count elsewhere (a database row, say); records nothing.
    pub fn pause_after(&self, failures: u32) -> Duration {
        let step = self.step(failures.max(1));
        if !self.jitter || step.is_zero() {
            return step;
        }
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=step - half)
    }

    /// Records a success: the next failure pauses `first` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and sleeps its pause; `false` if `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.next_pause();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_without_jitter() {
        let mut backoff = Backoff::new(100 * MS, 5_000 * MS).without_jitter();
        let pauses: Vec<u128> = (0..8).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.failures(), 8);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_each_step() {
        for _ in 0..200 {
            let mut backoff = Backoff::new(100 * MS, 1_000 * MS);
            for step in [100, 200, 400, 800, 1000, 1000] {
                let pause = backoff.next_pause();
                assert!(
                    pause >= step * MS / 2 && pause <= step * MS,
                    "{pause:?} outside step {step} ms"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_pauses() {
        let pauses: std::collections::HashSet<Duration> = (0..50)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_pause())
            .collect();
        assert!(pauses.len() > 10, "only {} distinct pauses in 50", pauses.len());
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(10 * MS, 1_000 * MS).without_jitter();
        for _ in 0..5 {
            backoff.next_pause();
        }
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.next_pause(), 10 * MS);
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).without_jitter();
        for _ in 0..100 {
            assert!(backoff.next_pause() <= Duration::from_secs(60));
        }
    }

    #[tokio::test]
    async fn wait_returns_false_on_shutdown() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!backoff.wait(&shutdown).await);
    }
}
