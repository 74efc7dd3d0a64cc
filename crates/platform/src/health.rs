//! Health that tells the truth: a service is SERVING only while the backends it needs answer.
//!
//! A [`DependencyWatcher`] probes each [`Dependency`] (the database with `SELECT 1`, the work
//! queue and the cache with their `ready()` check) every [`HealthSettings::interval`], each probe
//! bounded by [`HealthSettings::timeout`], and sets the `grpc.health.v1` status of the server as
//! a whole (`""`, what the readiness and startup probes ask) and of each of its named services:
//! NOT_SERVING while any dependency is down, SERVING again once all answer. While a dependency
//! that calls need ([`Dependency::database`]) is down, the server's [`CallGate`] is closed and
//! calls are answered UNAVAILABLE at once instead of each waiting out the connection pool's
//! timeout (see [`crate::grpc::server`]).
//!
//! A probe that is only slow (no answer within the timeout, or the connection pool busy) is
//! not an outage: a service under heavy load must not take itself out of rotation and refuse
//! its calls. A dependency counts as down at once when it refuses (connection refused or
//! reset, authentication, shutdown), and after [`SLOW_ROUNDS`] slow rounds in a row otherwise
//! (a black-holed network answers nothing at all).
//!
//! Liveness is another question, answered by the separate [`LIVENESS`] service name: SERVING
//! as long as the process runs, whatever its backends do, so Kubernetes restarts a pod that is
//! stuck but never one that merely waits for its database to come back.
//!
//! What the health service says is also a metric, `shop.service.serving` (1 serving, 0 not),
//! one series per mesh component (`shop.service`: `user`, `catalog`, `order`, and `gateway`,
//! which reports itself): [`report_serving`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::{ConnectionTrait as _, DatabaseConnection};
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    cache::Cache,
    config::{ConfigError, Env},
    queue::WorkQueue,
};

/// The health service name the liveness probe asks: SERVING while the process runs.
pub const LIVENESS: &str = "liveness";

/// How often dependencies are probed and how long one probe may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// Pause between two rounds of probes (`SHOP_HEALTH_INTERVAL` [2s]).
    pub interval: Duration,
    /// Longest wait for one probe's answer; no answer counts as down (`SHOP_HEALTH_TIMEOUT`
    /// [1s]).
    pub timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
        }
    }
}

impl HealthSettings {
    /// Reads `SHOP_HEALTH_INTERVAL` and `SHOP_HEALTH_TIMEOUT` (both positive).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let positive = |key: &str, default: Duration| match env.duration_or(key, default)? {
            zero if zero.is_zero() => Err(ConfigError::new(key, "must be positive")),
            value => Ok(value),
        };
        Ok(Self {
            interval: positive("SHOP_HEALTH_INTERVAL", defaults.interval)?,
            timeout: positive("SHOP_HEALTH_TIMEOUT", defaults.timeout)?,
        })
    }
}

/// Slow probes in a row after which a dependency counts as down.
pub const SLOW_ROUNDS: u32 = 3;

/// Why a probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProbeFailure {
    message: String,
    /// Refused outright (`true`), or only slow: no answer in time, or every pooled connection
    /// busy (`false`).
    definite: bool,
}

type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), ProbeFailure>> + Send>>;
type ProbeFn = Arc<dyn Fn() -> ProbeFuture + Send + Sync>;

/// A backend a service needs, and how to ask whether it answers.
#[derive(Clone)]
pub struct Dependency {
    name: &'static str,
    probe: ProbeFn,
    needed_by_calls: bool,
}

impl fmt::Debug for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.name)
            .field("needed_by_calls", &self.needed_by_calls)
            .finish_non_exhaustive()
    }
}

impl Dependency {
    /// The service's database, probed with `SELECT 1` through its pool. Every call needs it,
    /// so while it is down calls are refused at once (UNAVAILABLE).
    pub fn database(db: DatabaseConnection) -> Self {
        Self {
            name: "database",
            probe: Arc::new(move || {
                let db = db.clone();
                Box::pin(async move {
                    db.execute_unprepared("SELECT 1")
                        .await
                        .map(drop)
                        .map_err(|error| ProbeFailure {
                            definite: !pool_busy(&error),
                            message: error.to_string(),
                        })
                })
            }),
            needed_by_calls: true,
        }
    }

    /// The work queue (its broker connection). Background work needs it; calls do not (they
    /// write to the outbox), so they are still served while it is down.
    pub fn queue(queue: Arc<dyn WorkQueue>) -> Self {
        Self::ready_check("broker", move || {
            let queue = Arc::clone(&queue);
            async move { queue.ready().await }
        })
    }

    /// The cache. Calls that need it answer UNAVAILABLE themselves; the others still work.
    pub fn cache(cache: Arc<dyn Cache>) -> Self {
        Self::ready_check("cache", move || {
            let cache = Arc::clone(&cache);
            async move { cache.ready().await }
        })
    }

    fn ready_check<F, Fut>(name: &'static str, ready: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Self {
            name,
            probe: Arc::new(move || {
                let answered = ready();
                Box::pin(async move {
                    if answered.await {
                        Ok(())
                    } else {
                        Err(ProbeFailure {
                            message: "not ready".to_owned(),
                            definite: true,
                        })
                    }
                })
            }),
            needed_by_calls: false,
        }
    }

    /// Its name in logs: `database`, `broker`, `cache`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Asks once, within `timeout`.
    async fn check(&self, timeout: Duration) -> Result<(), ProbeFailure> {
        match tokio::time::timeout(timeout, (self.probe)()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(ProbeFailure {
                message: format!("no answer within {timeout:?}"),
                definite: false,
            }),
        }
    }
}

/// Every pooled connection is in use: the database answers, the service is just busy.
fn pool_busy(error: &sea_orm::DbErr) -> bool {
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, sqlx};
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => true,
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => matches!(**error, sqlx::Error::PoolTimedOut),
        _ => false,
    }
}

/// Whether the server takes calls: closed while a dependency every call needs is down. Cheap to
/// clone; all clones share one state.
#[derive(Clone, Debug)]
pub struct CallGate {
    open: Arc<AtomicBool>,
}

impl Default for CallGate {
    fn default() -> Self {
        Self {
            open: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl CallGate {
    /// True while calls are served.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    fn set(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
    }
}

/// Sets `shop.service.serving` of mesh component `service` (`user`, `catalog`, `order`,
/// `gateway`) to 1 while it serves, 0 while it does not (a dependency is down, or it drains).
pub fn report_serving(service: &str, serving: bool) {
    static GAUGE: OnceLock<crate::telemetry::metrics::PolledGauge> = OnceLock::new();
    GAUGE
        .get_or_init(|| {
            crate::telemetry::metrics::PolledGauge::new(
                "shop.service.serving",
                "",
                "1 while the component serves (its health is SERVING), 0 while it does not.",
            )
        })
        .set(&[("shop.service", service)], if serving { 1.0 } else { 0.0 });
}

/// Probes a server's dependencies and keeps its health status and call gate in step with them.
#[derive(Debug)]
pub struct DependencyWatcher {
    /// The mesh component whose `shop.service.serving` the status also sets, if any.
    component: Option<String>,
    dependencies: Vec<Dependency>,
    settings: HealthSettings,
    reporter: HealthReporter,
    services: Vec<&'static str>,
    gate: CallGate,
    /// Per dependency: up at the last round (`None` before the first).
    last: Vec<Option<bool>>,
    /// Per dependency: slow probes in a row.
    slow: Vec<u32>,
}

impl DependencyWatcher {
    /// A watcher setting the status of `""` and of every name in `services` on `reporter`.
    pub fn new(
        dependencies: Vec<Dependency>,
        settings: HealthSettings,
        reporter: HealthReporter,
        services: Vec<&'static str>,
        gate: CallGate,
    ) -> Self {
        let last = vec![None; dependencies.len()];
        let slow = vec![0; dependencies.len()];
        Self {
            component: None,
            dependencies,
            settings,
            reporter,
            services,
            gate,
            last,
            slow,
        }
    }

    /// Also reports the status as `shop.service.serving` of `component` ([`report_serving`]).
    pub fn reporting_as(mut self, component: impl Into<String>) -> Self {
        self.component = Some(component.into());
        self
    }

    /// Probes every dependency once (concurrently) and publishes the outcome.
    pub async fn round(&mut self) {
        let timeout = self.settings.timeout;
        let results =
            futures::future::join_all(self.dependencies.iter().map(|dependency| dependency.check(timeout))).await;
        let mut all_up = true;
        let mut calls_served = true;
        for (((dependency, result), last), slow) in self
            .dependencies
            .iter()
            .zip(results)
            .zip(self.last.iter_mut())
            .zip(self.slow.iter_mut())
        {
            *slow = match &result {
                Err(failure) if !failure.definite => slow.saturating_add(1),
                _ => 0,
            };
            let up = match &result {
                Ok(()) => true,
                Err(failure) => !failure.definite && *slow < SLOW_ROUNDS,
            };
            match (&result, *last) {
                (Err(failure), Some(true) | None) if !up => {
                    tracing::warn!(dependency = dependency.name, error = %failure.message, "dependency down: not serving");
                }
                (Err(failure), _) if up => {
                    tracing::debug!(dependency = dependency.name, error = %failure.message, "dependency slow to answer");
                }
                (_, Some(false)) if up => tracing::info!(dependency = dependency.name, "dependency back"),
                _ => {}
            }
            *last = Some(up);
            all_up &= up;
            calls_served &= up || !dependency.needed_by_calls;
        }
        self.gate.set(calls_served);
        let status = if all_up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in self.services.iter().copied().chain([""]) {
            self.reporter.set_service_status(name, status).await;
        }
        if let Some(component) = &self.component {
            report_serving(component, all_up);
        }
    }

    /// Probes every [`HealthSettings::interval`] until `stop` is cancelled, starting one
    /// interval from now (callers run the first [`DependencyWatcher::round`] themselves, so
    /// the status is known before the first call).
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.interval) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.round() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn settings_have_defaults_and_refuse_zero() {
        let env = MapEnv::from_pairs([]);
        assert_eq!(HealthSettings::from_env(&env).ok(), Some(HealthSettings::default()));
        let env = MapEnv::from_pairs([("SHOP_HEALTH_INTERVAL", "500ms"), ("SHOP_HEALTH_TIMEOUT", "200ms")]);
        assert_eq!(
            HealthSettings::from_env(&env).ok(),
            Some(HealthSettings {
                interval: Duration::from_millis(500),
                timeout: Duration::from_millis(200),
            })
        );
        let env = MapEnv::from_pairs([("SHOP_HEALTH_TIMEOUT", "0s")]);
        assert_eq!(
            HealthSettings::from_env(&env).err().map(|error| error.key),
            Some("SHOP_HEALTH_TIMEOUT".to_owned())
        );
    }

    fn probe(
        name: &'static str,
        outcome: impl Fn() -> Result<(), ProbeFailure> + Send + Sync + 'static,
        delay: Duration,
    ) -> Dependency {
        let outcome = Arc::new(outcome);
        Dependency {
            name,
            probe: Arc::new(move || {
                let outcome = Arc::clone(&outcome);
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    outcome()
                })
            }),
            needed_by_calls: true,
        }
    }

    fn watching(dependency: Dependency) -> (DependencyWatcher, CallGate) {
        let (reporter, _service) = tonic_health::server::health_reporter();
        let gate = CallGate::default();
        let settings = HealthSettings {
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(20),
        };
        (
            DependencyWatcher::new(vec![dependency], settings, reporter, Vec::new(), gate.clone()),
            gate,
        )
    }

    #[tokio::test]
    async fn a_refusing_database_closes_the_gate_at_once() {
        let refused = || {
            Err(ProbeFailure {
                message: "connection refused".into(),
                definite: true,
            })
        };
        let (mut watcher, gate) = watching(probe("database", refused, Duration::ZERO));
        watcher.round().await;
        assert!(!gate.is_open());
    }

    #[tokio::test]
    async fn a_slow_or_busy_database_is_an_outage_only_when_it_lasts() {
        // Slower than the probe timeout: no answer in time, as under heavy load.
        let (mut watcher, gate) = watching(probe("database", || Ok(()), Duration::from_millis(200)));
        for round in 1..SLOW_ROUNDS {
            watcher.round().await;
            assert!(gate.is_open(), "round {round}: a slow answer is not an outage yet");
        }
        watcher.round().await;
        assert!(!gate.is_open(), "{SLOW_ROUNDS} slow rounds in a row are");

        let busy = || {
            Err(ProbeFailure {
                message: "pool timed out".into(),
                definite: false,
            })
        };
        let (mut watcher, gate) = watching(probe("database", busy, Duration::ZERO));
        watcher.round().await;
        assert!(gate.is_open(), "a busy pool is not an outage");
    }

    #[test]
    fn a_pool_timeout_is_busy_and_a_refused_connection_is_not() {
        use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, sqlx};
        assert!(pool_busy(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
        assert!(pool_busy(&DbErr::Conn(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::PoolTimedOut
        )))));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!pool_busy(&DbErr::Conn(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::Io(refused)
        )))));
    }
}
