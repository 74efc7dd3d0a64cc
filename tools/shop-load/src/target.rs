//! The shop under load: one already running (`--url`), or one shop-load starts itself on the
//! test servers (`--spawn`), isolated like a test (its own PostgreSQL database, stock queue
//! names and cache key prefix) and removed at the end: the one-process `shop` binary, or the
//! four service binaries as the fault campaign runs them (without its fault proxies).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use fault_campaign::{
    Binaries,
    api::Api,
    process::Supervised,
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, StackOptions},
};
use shop_platform::testing;

use crate::{
    options::{Options, Scenario, Spawn, Target},
    smtp::SmtpReceiver,
};

/// How long a spawned shop may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The settings a spawned shop gets for load, beyond the isolation ones. Every virtual user
/// comes from 127.0.0.1, so the gateway's per-client limits (600 requests a minute per IP and
/// per user, 30 verification mails an hour per client) would be what is measured: they are
/// raised out of the way. Tokens last two hours, so no run outlives its sign-ins; paid orders
/// stay `paid` (shipping after a day), so the flash sale's terminal states are stable.
pub fn load_env(smtp_url: &str) -> Vec<(String, String)> {
    [
        ("SHOP_RATE_LIMIT_PER_IP", "100000000"),
        ("SHOP_RATE_LIMIT_PER_USER", "100000000"),
        ("SHOP_VERIFICATION_CLIENT_HOURLY_LIMIT", "100000000"),
        ("SHOP_ADMIN_EMAIL", ADMIN_EMAIL),
        ("SHOP_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SHOP_ACCESS_TOKEN_TTL", "2h"),
        ("SHOP_SHIP_AFTER", "1d"),
        ("SHOP_DELIVER_AFTER", "1d"),
        ("SMTP_URL", smtp_url),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// What a scenario changes in a spawned shop: `listing` measures the list's way to the database,
/// so the edge keeps no page.
fn scenario_env(scenario: Scenario) -> Vec<(String, String)> {
    match scenario {
        Scenario::Listing => vec![("SHOP_EDGE_CACHE_TTL".to_owned(), "0s".to_owned())],
        Scenario::Browse | Scenario::FlashSale | Scenario::Read => Vec::new(),
    }
}

/// The shop being measured.
#[derive(Debug)]
pub struct Shop {
    /// Its REST edge, `http://host:port`.
    pub origin: String,
    /// The setup client of its REST edge (sign-ups, products), sharing the load's connections.
    pub api: Api,
    /// The admin account that creates products: email and password.
    pub admin: (String, String),
    /// Its PostgreSQL database, when known (the pgbench ceiling runs there).
    pub database_url: Option<String>,
    /// The receiver of its mail, when shop-load has one.
    pub mail: Option<Arc<SmtpReceiver>>,
    spawned: Option<Spawned>,
}

/// What shop-load started, to be removed at the end.
#[derive(Debug)]
enum Spawned {
    OneProcess {
        process: Supervised,
        queues: Vec<String>,
        _data_dir: tempfile::TempDir,
    },
    Services(Stack),
}

impl Shop {
    /// The target of `options`, started when it is to be spawned, ready for load.
    pub async fn start(options: &Options, http: reqwest::Client) -> anyhow::Result<Self> {
        match &options.target {
            Target::Url(origin) => {
                let mail = match options.smtp_listen {
                    Some(addr) => Some(Arc::new(SmtpReceiver::start(addr).await?)),
                    None => None,
                };
                let admin = (
                    options
                        .admin_email
                        .clone()
                        .or_else(|| std::env::var("SHOP_ADMIN_EMAIL").ok())
                        .context("--url needs the admin's email (--admin-email or SHOP_ADMIN_EMAIL)")?,
                    options
                        .admin_password
                        .clone()
                        .or_else(|| std::env::var("SHOP_ADMIN_PASSWORD").ok())
                        .context("--url needs the admin's password (--admin-password or SHOP_ADMIN_PASSWORD)")?,
                );
                Ok(Self {
                    api: Api::with_client(http, origin.clone()),
                    origin: origin.clone(),
                    admin,
                    database_url: options.database_url.clone(),
                    mail,
                    spawned: None,
                })
            }
            Target::Spawn(kind) => spawn(*kind, http, scenario_env(options.scenario)).await,
        }
    }

    /// What it is, for the report: the URL, or how it was spawned.
    pub fn describe(options: &Options) -> String {
        match &options.target {
            Target::Url(origin) => origin.clone(),
            Target::Spawn(kind) => format!("spawned {}", kind.name()),
        }
    }

    /// Stops what was spawned and removes its queues and database.
    pub async fn stop(mut self) {
        let Some(spawned) = self.spawned.take() else { return };
        let database_url = self.database_url.take();
        match spawned {
            Spawned::OneProcess { process, queues, .. } => {
                drop(process);
                testing::delete_queues(&queues).await;
            }
            Spawned::Services(stack) => stack.stop().await,
        }
        if let Some(url) = database_url
            && let Err(error) = testing::drop_postgres_database(&url).await
        {
            eprintln!("shop-load: could not drop the run's database: {error:#}");
        }
    }

    /// Polls `/readyz` until it answers 200.
    async fn wait_until_ready(api: &Api) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let reply = api.get("/readyz", None).await;
            if reply.as_ref().is_ok_and(|reply| reply.status == 200) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the shop did not report ready within {START_TIMEOUT:?}: {reply:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts the shop as `kind` says, with shop-load's own SMTP receiver for its mail and
/// `extra_env` on top of the load settings.
async fn spawn(kind: Spawn, http: reqwest::Client, extra_env: Vec<(String, String)>) -> anyhow::Result<Shop> {
    let dir = Binaries::next_to_this_executable()?;
    let mail = Arc::new(SmtpReceiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
    let mut env = load_env(&mail.url());
    env.extend(extra_env);
    let admin = (ADMIN_EMAIL.to_owned(), ADMIN_PASSWORD.to_owned());
    let (origin, database_url, spawned) = match kind {
        Spawn::Services => {
            let binaries = Binaries::in_dir(&dir)?;
            let options = StackOptions {
                tool: "shop-load",
                proxies: false,
                env,
            };
            let stack = Stack::start_with(&binaries, options).await?;
            let origin = stack.api.origin().to_owned();
            (origin, stack.database_url.clone(), Spawned::Services(stack))
        }
        Spawn::OneProcess => {
            let binary = dir.join(format!("shop{}", std::env::consts::EXE_SUFFIX));
            if !binary.is_file() {
                bail!(
                    "shop is not built in {} (build it with `cargo build -p shop`, in the profile shop-load was built with)",
                    dir.display()
                );
            }
            let run = testing::unique_name("load");
            let database_url = testing::create_postgres_database().await;
            let queue_env = testing::run_queues(&run);
            let queues: Vec<String> = queue_env.iter().map(|(_, queue)| queue.clone()).collect();
            let data_dir = tempfile::tempdir().context("a data directory for shop")?;
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
            let mut shop_env: Vec<(String, String)> = [
                ("PATH", std::env::var("PATH").unwrap_or_default()),
                ("RUST_LOG", "info".to_owned()),
                ("SHOP_LOG_FORMAT", "json".to_owned()),
                ("SHOP_DATA_DIR", data_dir.path().display().to_string()),
                ("SHOP_HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("SHOP_METRICS_ADDR", "127.0.0.1:0".to_owned()),
                ("SHOP_USER_GRPC_ADDR", "127.0.0.1:0".to_owned()),
                ("SHOP_CATALOG_GRPC_ADDR", "127.0.0.1:0".to_owned()),
                ("SHOP_ORDER_GRPC_ADDR", "127.0.0.1:0".to_owned()),
                ("DATABASE_URL", database_url.clone()),
                ("REDIS_URL", testing::redis_url()),
                ("AMQP_URL", testing::amqp_url()),
                ("SHOP_CACHE_PREFIX", format!("{run}:")),
            ]
            .into_iter()
            .chain(queue_env)
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
            shop_env.extend(env);
            let log_dir = log_dir(&dir, &run)?;
            let process = Supervised::start("shop", binary, shop_env, log_dir.join("shop.log"))?;
            let spawned = Spawned::OneProcess {
                process,
                queues,
                _data_dir: data_dir,
            };
            (format!("http://127.0.0.1:{port}"), database_url, spawned)
        }
    };
    let shop = Shop {
        api: Api::with_client(http, origin.clone()),
        origin,
        admin,
        database_url: Some(database_url),
        mail: Some(mail),
        spawned: Some(spawned),
    };
    if let Err(error) = Shop::wait_until_ready(&shop.api).await {
        shop.stop().await;
        return Err(error);
    }
    Ok(shop)
}

/// `target/shop-load/<run>` next to the binaries, created.
fn log_dir(binaries: &std::path::Path, run: &str) -> anyhow::Result<PathBuf> {
    let root = binaries.parent().unwrap_or(binaries).join("shop-load").join(run);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}
