//! One harness for the integration tests of every service: [`TestService`] starts a
//! [`MeshService`] the way its binary does, on backends of its own.
//!
//! A test describes the service's environment, never its structs: [`TestSetup`] holds a
//! [`MapEnv`] with what isolates the test (a fresh PostgreSQL database, the test Redis under a
//! key prefix nobody else uses, queue names nobody else uses, port 0 on loopback, the mesh
//! keys), and the test's overrides are more variables on top (`.env("SHOP_SHIP_AFTER", "1s")`),
//! written as an operator would write them. Starting reads that environment through
//! [`BackendUrls::from_env`], [`ServiceSettings::from_env`] and [`MeshService::config_from_env`],
//! opens the backends, builds the service and spawns [`MeshService::run`] with a
//! [`CancellationToken`]: the configuration path under test is the binary's, so a variable a
//! test sets is one the binary reads, with the same defaults and validation.
//!
//! Some things a test needs no environment can say: a clock it moves by hand, a payment
//! provider that counts, a scheduler it ticks itself. For those, [`TestSetup::start_with`]
//! hands the settings, the configuration read from the environment and the backends to a
//! build function of the test's (the service's own builder, say), which adjusts what only a
//! test may and builds; everything else still comes from the environment. This keeps one path
//! for every service rather than a second, struct-based one for the services that need hooks.
//!
//! [`MeshService`] has no database accessor (the binaries need none), so a service's test
//! helpers name its own when they make the setup ([`TestSetup::new`]): the test reads through
//! the service's pool rather than a second one of its own.

use std::{collections::BTreeMap, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::MapEnv,
    grpc::{
        client::{GrpcChannel, Target, connect},
        mesh::{CATALOG, GATEWAY, Grants, MeshIdentity, MeshKey, OPERATOR, ORDER, TrustSet, USER, encode_public},
    },
    service::{BackendUrls, Backends, MeshService, ServiceSettings, data_dir},
};

/// How long [`TestService::stop`] waits for the service to drain.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// The keys of one test's mesh: the gateway, the three services and an operator, each trusting
/// all of them. Services read theirs from `SHOP_MESH_KEY` and `SHOP_MESH_TRUST`; doubles and
/// clients take an identity from [`MeshKeys::identity`].
#[derive(Clone, Debug)]
pub struct MeshKeys(Arc<BTreeMap<String, MeshKey>>);

impl MeshKeys {
    /// Fresh keys for the standard members.
    pub fn generate() -> Self {
        let names = [GATEWAY, USER, CATALOG, ORDER, OPERATOR];
        Self(Arc::new(
            names
                .into_iter()
                .map(|name| (name.to_owned(), MeshKey::generate()))
                .collect(),
        ))
    }

    /// Member `name` of this mesh, with the standard grants.
    pub fn identity(&self, name: &str) -> MeshIdentity {
        let key = self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("{name:?} is no member of the test mesh"));
        let mut trust = TrustSet::default();
        for (member, key) in self.0.iter() {
            trust.insert(member, key.public_key());
        }
        MeshIdentity::new(name, key.clone(), trust, &Grants::default()).expect("the standard names are valid")
    }

    /// `SHOP_MESH_KEY` and `SHOP_MESH_TRUST` of member `name`.
    fn env_of(&self, name: &str) -> [(String, String); 2] {
        let key = self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("{name:?} is no member of the test mesh"));
        let trust: Vec<String> = self
            .0
            .iter()
            .map(|(member, key)| format!("{member}={}", encode_public(&key.public_key())))
            .collect();
        [
            ("SHOP_MESH_KEY".to_owned(), key.to_base64()),
            ("SHOP_MESH_TRUST".to_owned(), trust.join(" ")),
        ]
    }
}

/// What a test owns beyond the service: removed when the last service using it is gone.
#[derive(Debug, Default)]
struct Owned {
    /// The data directory of an embedded service.
    data: Option<tempfile::TempDir>,
    /// Queues made up for this test, deleted from RabbitMQ at the end.
    queues: Vec<String>,
}

/// The environment of a service about to start (see the module docs).
#[derive(Debug)]
pub struct TestSetup<S: MeshService> {
    vars: BTreeMap<String, String>,
    mesh: MeshKeys,
    db_of: fn(&S) -> &DatabaseConnection,
    owned: Owned,
    /// Backends opened by another service of the test, shared as one process shares them.
    shared: Option<Backends>,
}

impl<S: MeshService> TestSetup<S> {
    /// Service `S` on the test servers: a fresh PostgreSQL database (made when it starts,
    /// unless `DATABASE_URL` is set by then), the test Redis under a key prefix of its own, the
    /// in-process queue (the binary's default; see [`TestSetup::rabbitmq`]), port 0 on
    /// loopback, and fresh mesh keys. `db_of` is the service's database accessor.
    pub fn new(db_of: fn(&S) -> &DatabaseConnection) -> Self {
        super::init_test_logging();
        let vars = [
            ("SHOP_GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("REDIS_URL", super::redis_url()),
            ("SHOP_CACHE_PREFIX", format!("{}:", super::unique_name("shop_test"))),
            ("AMQP_URL", "memory://".to_owned()),
        ];
        Self {
            vars: vars.into_iter().map(|(key, value)| (key.to_owned(), value)).collect(),
            mesh: MeshKeys::generate(),
            db_of,
            owned: Owned::default(),
            shared: None,
        }
    }

    /// Sets variable `key` (an override of the test's, or one more setting).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    /// Sets every variable of `pairs`, in order.
    pub fn envs<K: AsRef<str>, V: Into<String>>(self, pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        pairs
            .into_iter()
            .fold(self, |setup, (key, value)| setup.env(key.as_ref(), value))
    }

    /// The value of variable `key` so far.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// The test's mesh, to serve doubles of the service's peers as their members.
    pub fn mesh(&self) -> &MeshKeys {
        &self.mesh
    }

    /// The work queue on the test RabbitMQ (`AMQP_URL`) instead of in-process.
    pub fn rabbitmq(self) -> Self {
        self.env("AMQP_URL", super::amqp_url())
    }

    /// The one-process run's defaults: no backend URL, so a SQLite file in a data directory of
    /// the test's (`SHOP_DATA_DIR`), the in-process cache and the in-process queue.
    pub fn embedded(mut self) -> Self {
        for key in ["DATABASE_URL", "REDIS_URL", "AMQP_URL"] {
            self.vars.remove(key);
        }
        let data = tempfile::tempdir().expect("a temporary data directory");
        let path = data.path().display().to_string();
        self.owned.data = Some(data);
        self.env("SHOP_DATA_DIR", path)
    }

    /// Queues named by `variables` that no other test uses (unless set already), deleted from
    /// RabbitMQ when the service stops.
    pub fn unique_queues(mut self, variables: &[&str]) -> Self {
        let prefix = super::unique_name("test");
        for variable in variables {
            if !self.vars.contains_key(*variable) {
                let name = format!("{prefix}.{}", variable.to_ascii_lowercase());
                self.owned.queues.push(name.clone());
                self.vars.insert((*variable).to_owned(), name);
            }
        }
        self
    }

    /// A second service of the test, beside `other`: the same environment (database, cache,
    /// queue and its names, data directory) and mesh, and, when the queue is in-process, the
    /// same opened backends, as one process shares them. Queues and data stay `other`'s.
    pub fn alongside<T: MeshService>(mut self, other: &TestService<T>) -> Self {
        self.vars.extend(other.env.0.clone());
        self.vars.remove("SHOP_MESH_KEY");
        self.mesh = other.mesh.clone();
        if !on_rabbitmq(&other.env) {
            self.shared = Some(other.backends.clone());
        }
        self
    }

    /// Starts the service as its binary would (see the module docs).
    pub async fn start(self) -> TestService<S> {
        self.start_with(S::build).await
    }

    /// Starts the service built by `build` from the settings, configuration and backends read
    /// from the environment, for what a test injects beyond it (see the module docs).
    pub async fn start_with<F, Fut>(self, build: F) -> TestService<S>
    where
        F: FnOnce(ServiceSettings, S::Config, Backends) -> Fut,
        Fut: Future<Output = anyhow::Result<S>>,
    {
        let Self {
            mut vars,
            mesh,
            db_of,
            owned,
            shared,
        } = self;
        if !vars.contains_key("DATABASE_URL") && !vars.contains_key("SHOP_DATA_DIR") {
            vars.insert("DATABASE_URL".to_owned(), super::create_postgres_database().await);
        }
        vars.extend(mesh.env_of(S::NAME));
        let env = MapEnv(vars.into_iter().collect());

        let urls = BackendUrls::from_env(&env, &data_dir(&env)).expect("valid backend URLs");
        let settings =
            ServiceSettings::from_env(&env, S::NAME, S::DEFAULT_PORT, &urls).expect("valid service settings");
        let config = S::config_from_env(&env).expect("valid service configuration");
        let backends = match shared {
            Some(backends) => backends,
            None => Backends::open(&urls).await.expect("the test backends answer"),
        };
        let service = build(settings.clone(), config, backends.clone())
            .await
            .unwrap_or_else(|error| panic!("the {} service starts: {error:#}", S::NAME));
        let addr = service.grpc_addr();
        let db = db_of(&service).clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(shutdown.clone()));
        TestService {
            addr,
            db,
            env,
            settings,
            backends,
            mesh,
            owned,
            shutdown,
            task: Some(task),
            _service: std::marker::PhantomData,
        }
    }
}

/// A service running in a test; it stops when dropped (see [`TestService::stop`] to wait).
#[derive(Debug)]
pub struct TestService<S> {
    /// Where its gRPC server listens.
    pub addr: SocketAddr,
    /// Its database (the service's own pool).
    pub db: DatabaseConnection,
    env: MapEnv,
    settings: ServiceSettings,
    backends: Backends,
    mesh: MeshKeys,
    owned: Owned,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _service: std::marker::PhantomData<fn() -> S>,
}

impl<S: MeshService> TestService<S> {
    /// The environment it was started with.
    pub fn env(&self) -> &MapEnv {
        &self.env
    }

    /// The value of variable `key` it was started with.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.env.0.get(key).map(String::as_str)
    }

    /// The settings read from its environment.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The backends it was given (the very instances: the in-process queue it consumes).
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The test's mesh.
    pub fn mesh(&self) -> &MeshKeys {
        &self.mesh
    }

    /// A channel to it, signing its calls as the gateway, as the tests call.
    pub async fn channel(&self) -> GrpcChannel {
        self.channel_as(GATEWAY).await
    }

    /// A channel to it, signing its calls as mesh member `member`.
    pub async fn channel_as(&self, member: &str) -> GrpcChannel {
        let target = Target::parse(&format!("http://{}", self.addr)).expect("a loopback address is a target");
        connect(&target, &Default::default())
            .await
            .unwrap_or_else(|error| panic!("the {} service answers: {error}", S::NAME))
            .signed_by(&self.mesh.identity(member), S::NAME)
    }

    /// Deletes `queues` from RabbitMQ too when it stops (queues the test declared itself).
    pub fn delete_queues_on_stop(&mut self, queues: impl IntoIterator<Item = String>) {
        self.owned.queues.extend(queues);
    }

    /// Stops it and waits until it drained (bounded), failing the test if it failed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_PATIENCE, task)
                .await
                .unwrap_or_else(|_| panic!("the {} service stops within {STOP_PATIENCE:?}", S::NAME))
                .expect("the service task ends without panicking")
                .unwrap_or_else(|error| panic!("the {} service stops cleanly: {error:#}", S::NAME));
        }
        if on_rabbitmq(&self.env) {
            super::delete_queues(&std::mem::take(&mut self.owned.queues)).await;
        }
    }
}

impl<S> Drop for TestService<S> {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Quorum queues hold the broker's file handles: a set left behind by every test
        // exhausts its limit within a few runs.
        if on_rabbitmq(&self.env) && !self.owned.queues.is_empty() {
            super::delete_queues_blocking(std::mem::take(&mut self.owned.queues));
        }
    }
}

/// Whether the work queue of `env` is RabbitMQ (else in-process, in this process).
fn on_rabbitmq(env: &MapEnv) -> bool {
    env.0.get("AMQP_URL").is_some_and(|url| url.starts_with("amqp"))
}
