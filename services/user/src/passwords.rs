//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane), on the
//! blocking thread pool so the async workers keep serving while a hash is computed. A dummy
//! hash made at start is verified for unknown accounts, so "no such account" costs the same
//! time as "wrong password" and sign-in timing reveals nothing.
//!
//! Each hash holds 19 MiB while it runs, so the number running at once is bounded by a memory
//! budget (`SHOP_PASSWORD_HASH_MEMORY_MIB`): a check waits up to [`QUEUE_WAIT`] for a slot, and
//! is then shed with UNAVAILABLE (503 with `Retry-After` at the gateway) rather than growing
//! the process past its memory limit. The checks waiting for a slot are the gauge
//! `shop.password_hash.waiting` (Prometheus `shop_password_hash_waiting`): above zero for long,
//! the budget is too small for the sign-in load.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use opentelemetry::metrics::UpDownCounter;
use shop_platform::grpc::error::ServiceError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The memory one argon2id hash holds (the OWASP parameters, `Argon2::default()`).
pub const MIB_PER_HASH: u32 = 19;

/// The longest a password check waits for a hashing slot before it is shed.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    dummy: Arc<str>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

/// Password checks waiting for a hashing slot now (exported as a gauge, present from the start).
fn waiting() -> &'static UpDownCounter<i64> {
    static WAITING: OnceLock<UpDownCounter<i64>> = OnceLock::new();
    WAITING.get_or_init(|| {
        let waiting = shop_platform::telemetry::metrics::meter()
            .i64_up_down_counter("shop.password_hash.waiting")
            .with_unit("{check}")
            .with_description("Password checks waiting for a hashing slot (SHOP_PASSWORD_HASH_MEMORY_MIB).")
            .build();
        waiting.add(0, &[]);
        waiting
    })
}

/// Counts one check as waiting for as long as it lives.
struct Waiting;

impl Waiting {
    fn start() -> Self {
        waiting().add(1, &[]);
        Self
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        waiting().add(-1, &[]);
    }
}

impl Passwords {
    /// Prepares the dummy hash; at most `memory_mib / 19` hashes (at least one) run at once.
    pub async fn new(memory_mib: u32) -> anyhow::Result<Self> {
        let _ = waiting();
        let slots = Arc::new(Semaphore::new(usize::try_from((memory_mib / MIB_PER_HASH).max(1))?));
        let permit = Arc::clone(&slots).acquire_owned().await?;
        let dummy = hash_blocking(crate::secrets::new_token(), permit).await?;
        Ok(Self {
            dummy: dummy.into(),
            slots,
        })
    }

    /// A hashing slot, or UNAVAILABLE when none frees up within [`QUEUE_WAIT`].
    async fn slot(&self) -> Result<OwnedSemaphorePermit, ServiceError> {
        let shed = || ServiceError::Unavailable("too many password checks at once; retry shortly".to_owned());
        let _waiting = Waiting::start();
        tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| shed())?
            .map_err(|_| shed())
    }

    /// The PHC string (`$argon2id$v=19$…`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let permit = self.slot().await?;
        Ok(hash_blocking(password.to_owned(), permit).await?)
    }

    /// Whether `password` matches `hash`; with `None` (no such account) the dummy hash is
    /// checked so the answer takes as long, and is always false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, ServiceError> {
        let permit = self.slot().await?;
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| Arc::clone(&self.dummy), Arc::from);
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            Argon2::default().verify_password(password.as_bytes(), &*hash).is_ok()
        })
        .await
        .context("password verification task")?;
        Ok(known && matches)
    }
}

/// Hashes on the blocking pool, holding `permit` until the hash is done (even if the caller
/// has gone: the memory is held until then).
async fn hash_blocking(password: String, permit: OwnedSemaphorePermit) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))
    })
    .await
    .context("password hashing task")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() -> anyhow::Result<()> {
        let passwords = Passwords::new(64).await?;
        let hash = passwords.hash("s3cret!pw").await?;
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.verify("s3cret!pw", Some(&hash)).await?);
        assert!(!passwords.verify("s3cret!px", Some(&hash)).await?);
        assert!(!passwords.verify("anything", None).await?);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_beyond_the_memory_budget_are_shed() -> anyhow::Result<()> {
        // A budget of one hash: while one check holds the slot, another waits, then is shed.
        let passwords = Passwords::new(MIB_PER_HASH).await?;
        let held = Arc::clone(&passwords.slots).acquire_owned().await?;
        let started = std::time::Instant::now();
        let shed = passwords.verify("anything", None).await;
        assert!(matches!(shed, Err(ServiceError::Unavailable(_))), "{shed:?}");
        assert!(started.elapsed() >= QUEUE_WAIT);
        drop(held);
        assert!(!passwords.verify("anything", None).await?);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_waiting_for_a_slot_are_gauged() -> anyhow::Result<()> {
        let metrics = shop_platform::testing::metrics::Scraper::install();
        // Two slots, both held: two checks wait, and both get a slot at once when freed.
        let passwords = Passwords::new(2 * MIB_PER_HASH).await?;
        assert_eq!(metrics.value("shop_password_hash_waiting", &[]).await, Some(0.0));
        let held = Arc::clone(&passwords.slots).acquire_many_owned(2).await?;
        let checks: Vec<_> = (0..2)
            .map(|_| {
                let passwords = passwords.clone();
                tokio::spawn(async move { passwords.verify("anything", None).await })
            })
            .collect();
        metrics
            .wait_for("shop_password_hash_waiting", &[], |value| value == 2.0)
            .await;
        drop(held);
        for check in checks {
            assert!(!check.await??);
        }
        assert_eq!(metrics.value("shop_password_hash_waiting", &[]).await, Some(0.0));
        Ok(())
    }
}
