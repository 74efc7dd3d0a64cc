//! What every service binary configures the same way: where its gRPC server listens, its
//! database, and the shared backends (cache and work queue) chosen by URL. The one-process
//! `shop` binary opens the backends once and hands the same instances to every service, so the
//! in-process queue really connects the order service to the catalog worker.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;

use crate::{
    cache::{self, Cache},
    config::{ConfigError, Env},
    db::DatabaseConfig,
    grpc::{mesh::MeshIdentity, server::GrpcLimits},
    health::HealthSettings,
    outbox::RelayOptions,
    queue::{self, WorkQueue},
};

/// URLs of the backends a process uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendUrls {
    /// `postgres://…` (each service in its own schema) or `sqlite://…` (a file per service).
    pub database: String,
    /// The cache: `redis://…` or `memory://`, and the prefix of its keys.
    pub cache: CacheUrl,
    /// `amqp://…`, `memory://`, or `sqlite://<path>` (in-process, kept in that file).
    pub queue: String,
}

impl BackendUrls {
    /// Reads `DATABASE_URL`, `REDIS_URL` and `AMQP_URL`; without them: SQLite files under
    /// `data_dir`, and in-process cache and queue.
    pub fn from_env(env: &impl Env, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        Self::read(env, data_dir, "memory://")
    }

    /// As [`BackendUrls::from_env`], for the one-process run: without `AMQP_URL`, the queue is
    /// the in-process one kept in `<data_dir>/queue.db`, so that a killed run loses no message.
    pub fn embedded_from_env(env: &impl Env, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        Self::read(
            env,
            data_dir,
            &format!("sqlite://{}", data_dir.join(QUEUE_FILE).display()),
        )
    }

    fn read(env: &impl Env, data_dir: &std::path::Path, default_queue: &str) -> Result<Self, ConfigError> {
        let default_db = format!("sqlite://{}/shop.db?mode=rwc", data_dir.display());
        Ok(Self {
            database: env.url_or("DATABASE_URL", &default_db, &["postgres", "postgresql", "sqlite"])?,
            cache: CacheUrl::from_env(env)?,
            queue: env.url_or("AMQP_URL", default_queue, &["amqp", "amqps", "memory", "sqlite"])?,
        })
    }
}

/// Where the cache is: read once here for the services (through [`BackendUrls`]) and for the
/// gateway, which needs no other backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheUrl {
    /// `REDIS_URL`: `redis://…`, `rediss://…`, or `memory://` (in-process) by default.
    pub url: String,
    /// `SHOP_CACHE_PREFIX` [shop:]: the prefix of every key, so that several deployments, or
    /// test runs, can share one Redis without seeing each other's keys.
    pub prefix: String,
}

impl CacheUrl {
    /// Reads `REDIS_URL` and `SHOP_CACHE_PREFIX`.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.url_or("REDIS_URL", "memory://", &["redis", "rediss", "memory"])?,
            prefix: env.var("SHOP_CACHE_PREFIX").unwrap_or_else(|| "shop:".to_owned()),
        })
    }

    /// Opens the cache, with `namespace` after the prefix (`gateway:`, or empty).
    pub async fn open(&self, namespace: &str) -> anyhow::Result<Arc<dyn Cache>> {
        cache::from_url(&self.url, &format!("{}{namespace}", self.prefix))
            .await
            .with_context(|| format!("opening the cache at {}", crate::config::redact_url(&self.url)))
    }
}

/// The file of the one-process run's durable queue, in the data directory.
pub const QUEUE_FILE: &str = "queue.db";

/// The data directory: `SHOP_DATA_DIR`, else `$XDG_DATA_HOME/shop`, else `~/.local/share/shop`,
/// else `./shop-data`.
pub fn data_dir(env: &impl Env) -> PathBuf {
    env.path_or("SHOP_DATA_DIR", || {
        env.var("XDG_DATA_HOME")
            .map(|dir| PathBuf::from(dir).join("shop"))
            .or_else(|| {
                env.var("HOME")
                    .map(|home| PathBuf::from(home).join(".local/share/shop"))
            })
            .unwrap_or_else(|| PathBuf::from("shop-data"))
    })
}

/// The cache and work queue, opened once per process and shared by its services.
#[derive(Clone, Debug)]
pub struct Backends {
    /// The cache (each service uses its own key prefix).
    pub cache: Arc<dyn Cache>,
    /// The work queue.
    pub queue: Arc<dyn WorkQueue>,
}

impl Backends {
    /// Opens the cache and queue the URLs name.
    pub async fn open(urls: &BackendUrls) -> anyhow::Result<Self> {
        let cache = urls.cache.open("").await?;
        let queue = queue::from_url(&urls.queue)
            .await
            .with_context(|| format!("opening the work queue at {}", crate::config::redact_url(&urls.queue)))?;
        Ok(Self { cache, queue })
    }
}

/// The settings of one service: its gRPC address, its database, how its health is probed, and
/// its identity in the mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Where the gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// The service's database (its own schema or file).
    pub database: DatabaseConfig,
    /// How often its dependencies are probed for its health status.
    pub health: HealthSettings,
    /// Its mesh identity: the key it signs its calls with, the callers it accepts.
    pub mesh: MeshIdentity,
    /// How many calls its gRPC server takes on at once.
    pub grpc_limits: GrpcLimits,
    /// Whether its gRPC server is also offered to the clients of its own process, which then
    /// call it without the network (the one-process `shop` binary; see
    /// [`crate::grpc::in_process`]). A service binary alone has no such clients.
    pub in_process: bool,
    /// How its outbox relay publishes (`SHOP_OUTBOX_BUNDLE_SIZE`, see
    /// [`RelayOptions::from_env`]).
    pub outbox: RelayOptions,
}

impl ServiceSettings {
    /// The settings of service `name` from `SHOP_GRPC_ADDR` (default `0.0.0.0:<default_port>`),
    /// the database URL, `SHOP_HEALTH_INTERVAL`/`SHOP_HEALTH_TIMEOUT`, the `SHOP_MESH_*`
    /// variables (see [`MeshIdentity::from_env`]) and the `SHOP_GRPC_*` limits (see
    /// [`GrpcLimits::from_env`]) and `SHOP_OUTBOX_BUNDLE_SIZE`.
    pub fn from_env(env: &impl Env, name: &str, default_port: u16, urls: &BackendUrls) -> Result<Self, ConfigError> {
        Ok(Self {
            grpc_addr: env.addr_or("SHOP_GRPC_ADDR", &format!("0.0.0.0:{default_port}"))?,
            database: DatabaseConfig::new(urls.database.clone(), name).with_migration_settings(env)?,
            health: HealthSettings::from_env(env)?,
            mesh: MeshIdentity::from_env(env, name)?,
            grpc_limits: GrpcLimits::from_env(env)?,
            in_process: false,
            outbox: RelayOptions::from_env(env)?,
        })
    }
}

/// A service of the mesh, as its binary and the one-process `shop` binary start it.
pub trait MeshService: Sized + Send + 'static {
    /// Its name: also its database schema and its telemetry `service.name`.
    const NAME: &'static str;
    /// The gRPC port it listens on by default.
    const DEFAULT_PORT: u16;

    /// Its own settings, beyond its address and database.
    type Config: Send + 'static;

    /// The migrations of its schema (run at start, or alone with `SHOP_MIGRATE=only`).
    type Migrator: sea_orm_migration::MigratorTrait;

    /// Reads its own settings from the environment (the same variables whether it runs alone
    /// or inside the one-process `shop` binary).
    fn config_from_env(env: &impl Env) -> Result<Self::Config, ConfigError>;

    /// Connects to its database (migrating it), binds its gRPC listener, and prepares its
    /// background work; nothing is served yet.
    fn build(
        settings: ServiceSettings,
        config: Self::Config,
        backends: Backends,
    ) -> impl std::future::Future<Output = anyhow::Result<Self>> + Send;

    /// Where its gRPC server listens.
    fn grpc_addr(&self) -> SocketAddr;

    /// Serves until `shutdown` is cancelled, then drains in-flight work and returns.
    fn run(
        self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// Connects to a service's database and applies its migrations (or, with `SHOP_MIGRATE=skip`,
/// checks that they were applied).
pub async fn open_database<M: sea_orm_migration::MigratorTrait>(
    settings: &ServiceSettings,
) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let db = crate::db::connect(&settings.database).await?;
    crate::db::prepare::<M>(&db, &settings.database).await?;
    Ok(db)
}

/// The whole `main` of a service binary: a `probe` command line (see [`crate::probe`]), or
/// configuration from the environment (exit code 64 on a bad value), telemetry, backends, the
/// service, and a clean stop on SIGTERM or ctrl-c. With `SHOP_MIGRATE=only` it migrates the
/// service's schema and exits, touching no other backend.
pub fn main<S: MeshService>() -> std::process::ExitCode {
    use crate::config::{ProcessEnv, exit_on_bad_config};
    if let Some(code) = crate::probe::main_from_args(S::NAME) {
        return code;
    }
    let env = ProcessEnv;
    let (mut telemetry, urls, settings) = exit_on_bad_config((|| {
        // `shop-user`, `shop-catalog`, `shop-order`: the binaries' names.
        let telemetry = crate::telemetry::TelemetryConfig::from_env(&env, &format!("shop-{}", S::NAME))?;
        let urls = BackendUrls::from_env(&env, &data_dir(&env))?;
        let settings = ServiceSettings::from_env(&env, S::NAME, S::DEFAULT_PORT, &urls)?;
        Ok((telemetry, urls, settings))
    })());
    let migrate_only = settings.database.migrate == crate::db::MigrateMode::Only;
    if migrate_only {
        // The migration job runs and exits: nothing to scrape, and no port to take.
        telemetry.metrics_addr = None;
    }
    // The migration job carries only the database settings: the service's own are not read.
    let config = if migrate_only {
        None
    } else {
        Some(exit_on_bad_config(S::config_from_env(&env)))
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let _guard = crate::telemetry::init(&telemetry)?;
        let Some(config) = config else {
            let db = open_database::<S::Migrator>(&settings).await?;
            db.close().await.ok();
            tracing::info!(service = S::NAME, schema = %settings.database.schema, "migrated; exiting (SHOP_MIGRATE=only)");
            return Ok(());
        };
        let backends = Backends::open(&urls).await?;
        let service = S::build(settings, config, backends).await?;
        tracing::info!(service = S::NAME, grpc = %service.grpc_addr(), "listening");
        service.run(crate::shutdown::on_signal()).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{} service failed: {error:#}", S::NAME);
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn defaults_are_embedded() {
        let env = MapEnv::from_pairs([("SHOP_DATA_DIR", "/srv/shop")]);
        let urls = BackendUrls::from_env(&env, &data_dir(&env)).ok();
        assert_eq!(
            urls,
            Some(BackendUrls {
                database: "sqlite:///srv/shop/shop.db?mode=rwc".into(),
                cache: CacheUrl {
                    url: "memory://".into(),
                    prefix: "shop:".into(),
                },
                queue: "memory://".into(),
            })
        );
    }

    #[test]
    fn the_one_process_run_keeps_its_queue_in_the_data_directory() {
        let env = MapEnv::from_pairs([("SHOP_DATA_DIR", "/srv/shop")]);
        let urls = BackendUrls::embedded_from_env(&env, &data_dir(&env)).ok();
        assert_eq!(urls.map(|urls| urls.queue), Some("sqlite:///srv/shop/queue.db".into()));
        let env = MapEnv::from_pairs([("AMQP_URL", "memory://")]);
        let urls = BackendUrls::embedded_from_env(&env, &data_dir(&env)).ok();
        assert_eq!(urls.map(|urls| urls.queue), Some("memory://".into()));
    }

    #[test]
    fn wrong_schemes_name_their_variable() {
        let env = MapEnv::from_pairs([("REDIS_URL", "amqp://x")]);
        let error = BackendUrls::from_env(&env, std::path::Path::new("/d"))
            .err()
            .map(|e| e.key);
        assert_eq!(error.as_deref(), Some("REDIS_URL"));
    }

    #[test]
    fn data_dir_falls_back_to_the_home_directory() {
        let env = MapEnv::from_pairs([("HOME", "/home/ada")]);
        assert_eq!(data_dir(&env), PathBuf::from("/home/ada/.local/share/shop"));
    }
}
