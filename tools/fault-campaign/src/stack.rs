//! The deployment under test: the four service binaries as separate processes on loopback,
//! each reaching PostgreSQL, RabbitMQ and Redis through a cuttable TCP proxy. The run is
//! isolated: its own database, its own queue names, its own cache key prefix, so it shares the
//! servers with anything else (and never stops them).
//!
//! Every service listens on a port chosen once, so a service started again after a kill is
//! found where it was.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use shop_platform::{
    grpc::mesh::{MeshKey, encode_public},
    testing::{self, proxy::FaultProxy},
};

use crate::{
    api::Api,
    binaries::Binaries,
    process::Supervised,
    profile::{Link, Service},
};

/// The bootstrapped admin account.
pub const ADMIN_EMAIL: &str = "campaign-admin@shop.example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "Campaign-Adm1n!";
/// Paid orders ship this long after payment.
pub const SHIP_AFTER: Duration = Duration::from_secs(3);
/// Shipped orders are delivered this long after shipping.
pub const DELIVER_AFTER: Duration = Duration::from_secs(2);

/// How long a process may take to start listening (migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the gateway may take to report every service ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The running deployment.
#[derive(Debug)]
pub struct Stack {
    /// The run's unique name (queue names, cache prefix, logs).
    pub run: String,
    /// The REST edge.
    pub api: Api,
    /// Where each process's output is written.
    pub log_dir: PathBuf,
    /// The run's own PostgreSQL database (reached directly, not through a proxy).
    pub database_url: String,
    services: BTreeMap<Service, Supervised>,
    proxies: Option<Proxies>,
    /// The work queues (their `.dead` queues are derived).
    queues: Vec<String>,
}

/// The cuttable links to the backends.
#[derive(Debug)]
struct Proxies {
    postgres: FaultProxy,
    rabbitmq: FaultProxy,
    redis: FaultProxy,
}

/// How a deployment is set up.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The tool running it: names the run and its log directory (`target/<tool>/<run>`).
    pub tool: &'static str,
    /// Every backend link through a cuttable proxy (what the campaign's faults cut); without
    /// them the services reach the servers directly.
    pub proxies: bool,
    /// Settings given to every process after the common ones (so they override them).
    pub env: Vec<(String, String)>,
}

impl StackOptions {
    /// The fault campaign's: proxied links, the common settings.
    pub fn campaign() -> Self {
        Self {
            tool: "fault-campaign",
            proxies: true,
            env: Vec::new(),
        }
    }
}

impl Stack {
    /// Creates the run's database, starts the proxies and the four services, and waits until
    /// the gateway reports every service ready.
    pub async fn start(binaries: &Binaries) -> anyhow::Result<Self> {
        Self::start_with(binaries, StackOptions::campaign()).await
    }

    /// [`Stack::start`] set up as `options` say.
    pub async fn start_with(binaries: &Binaries, options: StackOptions) -> anyhow::Result<Self> {
        // `fault-campaign` → `campaign_<random>`, `shop-load` → `load_<random>`.
        let run = testing::unique_name(options.tool.rsplit('-').next().unwrap_or(options.tool));
        let log_dir = binaries.log_root_of(options.tool).join(&run);
        std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;

        let database_url = testing::create_postgres_database().await;
        let queue_env = testing::run_queues(&run);
        let queues: Vec<String> = queue_env.iter().map(|(_, queue)| queue.clone()).collect();
        let ports = free_ports()?;
        let mut env = common_env(&run, queue_env);
        let proxies = if options.proxies {
            let proxies = Proxies {
                postgres: FaultProxy::start(upstream(&database_url).await?).await?,
                rabbitmq: FaultProxy::start(upstream(&testing::amqp_url()).await?).await?,
                redis: FaultProxy::start(upstream(&testing::redis_url()).await?).await?,
            };
            env.extend([
                (
                    "DATABASE_URL".to_owned(),
                    through(&database_url, proxies.postgres.addr())?,
                ),
                (
                    "AMQP_URL".to_owned(),
                    through(&testing::amqp_url(), proxies.rabbitmq.addr())?,
                ),
                (
                    "REDIS_URL".to_owned(),
                    through(&testing::redis_url(), proxies.redis.addr())?,
                ),
            ]);
            Some(proxies)
        } else {
            env.extend([
                ("DATABASE_URL".to_owned(), database_url.clone()),
                ("AMQP_URL".to_owned(), testing::amqp_url()),
                ("REDIS_URL".to_owned(), testing::redis_url()),
            ]);
            None
        };
        for (service, variable) in [
            (Service::Catalog, "SHOP_CATALOG_TARGET"),
            (Service::User, "SHOP_USER_TARGET"),
            (Service::Order, "SHOP_ORDER_TARGET"),
        ] {
            env.push((variable.to_owned(), format!("http://127.0.0.1:{}", ports[&service])));
        }
        // A mesh key per process, as a deployment gives them; everyone trusts everyone.
        let mesh_keys: BTreeMap<Service, MeshKey> =
            Service::ALL.into_iter().map(|s| (s, MeshKey::generate())).collect();
        let trust: Vec<String> = mesh_keys
            .iter()
            .map(|(service, key)| {
                let name = service.binary().trim_start_matches("shop-");
                format!("{name}={}", encode_public(&key.public_key()))
            })
            .collect();
        env.push(("SHOP_MESH_TRUST".to_owned(), trust.join(" ")));
        env.extend(options.env);

        let mut stack = Self {
            api: Api::new(format!("http://127.0.0.1:{}", ports[&Service::Gateway]))?,
            run,
            log_dir,
            database_url,
            services: BTreeMap::new(),
            proxies,
            queues,
        };
        for service in Service::ALL {
            let mut service_env = env.clone();
            let address_variable = if service == Service::Gateway {
                "SHOP_HTTP_ADDR"
            } else {
                "SHOP_GRPC_ADDR"
            };
            service_env.push((address_variable.to_owned(), format!("127.0.0.1:{}", ports[&service])));
            service_env.push(("SHOP_MESH_KEY".to_owned(), mesh_keys[&service].to_base64()));
            let log_file = stack.log_dir.join(format!("{}.log", service.binary()));
            let process = Supervised::start(service.binary(), binaries.path(service), service_env, log_file)?;
            process.wait_listening(1, START_TIMEOUT).await?;
            stack.services.insert(service, process);
        }
        stack.wait_until_ready(READY_TIMEOUT).await?;
        Ok(stack)
    }

    /// Polls the gateway's `/readyz` until it answers 200.
    pub async fn wait_until_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reply = self.api.get("/readyz", None).await;
            if reply.as_ref().is_ok_and(|reply| reply.status == 200) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the gateway did not report ready within {timeout:?}: {reply:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The supervised process of `service`.
    pub fn service(&self, service: Service) -> anyhow::Result<&Supervised> {
        self.services
            .get(&service)
            .with_context(|| format!("{service} is not running"))
    }

    /// SIGKILLs `service`, keeps it down for `down`, starts it again and waits until it listens.
    pub async fn kill(&self, service: Service, down: Duration) -> anyhow::Result<()> {
        self.service(service)?.kill_and_restart(down, START_TIMEOUT).await
    }

    /// Cuts every connection to `link`'s backend, and new ones, for `outage` (nothing
    /// without proxies).
    pub async fn cut(&self, link: Link, outage: Duration) {
        if let Some(proxies) = &self.proxies {
            let proxy = match link {
                Link::Postgres => &proxies.postgres,
                Link::RabbitMq => &proxies.rabbitmq,
                Link::Redis => &proxies.redis,
            };
            proxy.cut_for(outage).await;
        }
    }

    /// How many times each service exited without being killed by the campaign.
    pub fn unplanned_exits(&self) -> Vec<(Service, usize)> {
        self.services
            .iter()
            .map(|(service, process)| (*service, process.output().unplanned_exits()))
            .collect()
    }

    /// The message count of each dead-letter queue of the run, read straight from RabbitMQ
    /// (not through the proxy), with a passive declare.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<(String, u32)>> {
        let url = testing::amqp_url();
        let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
        let connection = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .context("connecting to RabbitMQ timed out")??;
        let channel = connection.create_channel().await?;
        let mut counts = Vec::new();
        for queue in &self.queues {
            let name = shop_platform::queue::dead_letter_queue_name(queue);
            let options = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declared = channel
                .queue_declare(name.as_str().into(), options, Default::default())
                .await
                .with_context(|| format!("reading {name}"))?;
            counts.push((name, declared.message_count()));
        }
        let _ = connection.close(200, "counted".into()).await;
        Ok(counts)
    }

    /// Kills every process, then deletes the run's queues (the database stays for
    /// post-mortems; CI drops them).
    pub async fn stop(mut self) {
        // Killed first, so that nothing declares the queues again.
        self.services.clear();
        testing::delete_queues(&std::mem::take(&mut self.queues)).await;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Reached with queues left only when the campaign failed on its way (a panic, an
        // error): the processes die here (synchronously), then the queues go, best effort.
        self.services.clear();
        let queues = std::mem::take(&mut self.queues);
        if !queues.is_empty() {
            testing::delete_queues_blocking(queues);
        }
    }
}

/// The settings every process shares.
fn common_env(run: &str, queue_env: Vec<(&str, String)>) -> Vec<(String, String)> {
    let mut seed = [0_u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let mut env: Vec<(String, String)> = [
        ("RUST_LOG", "info".to_owned()),
        ("SHOP_LOG_FORMAT", "json".to_owned()),
        ("SHOP_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("SHOP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("SHOP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        // One key for every incarnation of the user service: tokens outlive its restarts.
        (
            "SHOP_JWT_SIGNING_KEYS",
            format!("campaign-1={}", URL_SAFE_NO_PAD.encode(seed)),
        ),
        ("SHOP_ACCESS_TOKEN_TTL", "2h".to_owned()),
        ("SHOP_SHIP_AFTER", format!("{}ms", SHIP_AFTER.as_millis())),
        ("SHOP_DELIVER_AFTER", format!("{}ms", DELIVER_AFTER.as_millis())),
        ("SHOP_ORDER_SHIPMENT_INTERVAL", "500ms".to_owned()),
        // No total is declined on purpose: a declined order would be a campaign artefact.
        ("SHOP_PAYMENT_DECLINE_AMOUNT", "off".to_owned()),
        // Every buyer comes from 127.0.0.1: the edge's per-client limits would be the bottleneck.
        ("SHOP_RATE_LIMIT_PER_IP", "1000000".to_owned()),
        ("SHOP_RATE_LIMIT_PER_USER", "1000000".to_owned()),
        ("SHOP_VERIFICATION_CLIENT_HOURLY_LIMIT", "100000".to_owned()),
        ("SHOP_CACHE_PREFIX", format!("{run}:")),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    env.extend(
        queue_env
            .into_iter()
            .map(|(variable, queue)| (variable.to_owned(), queue)),
    );
    env
}

/// Four distinct free loopback ports, one per service, held together while chosen.
fn free_ports() -> anyhow::Result<BTreeMap<Service, u16>> {
    let listeners = Service::ALL
        .iter()
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()?;
    Service::ALL
        .into_iter()
        .zip(&listeners)
        .map(|(service, listener)| Ok((service, listener.local_addr()?.port())))
        .collect()
}

/// The socket address of the server a URL names.
async fn upstream(url: &str) -> anyhow::Result<SocketAddr> {
    let parsed = url::Url::parse(url).with_context(|| format!("bad URL {}", redact(url)))?;
    let host = parsed.host_str().context("a server URL needs a host")?;
    let port = parsed.port_or_known_default().context("a server URL needs a port")?;
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .with_context(|| format!("{host} does not resolve"))
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, proxy: SocketAddr) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).with_context(|| format!("bad URL {}", redact(url)))?;
    parsed
        .set_ip_host(proxy.ip())
        .map_err(|()| anyhow::anyhow!("cannot set the host of {}", redact(url)))?;
    parsed
        .set_port(Some(proxy.port()))
        .map_err(|()| anyhow::anyhow!("cannot set the port of {}", redact(url)))?;
    Ok(parsed.to_string())
}

fn redact(url: &str) -> String {
    shop_platform::config::redact_url(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rerouted_through_the_proxy_with_credentials_and_path_kept() {
        let proxy: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        assert_eq!(
            through("amqp://guest:guest@127.0.0.1:5672/shop-test", proxy).unwrap(),
            "amqp://guest:guest@127.0.0.1:41000/shop-test"
        );
        assert_eq!(
            through("postgres://postgres@localhost:5432/shop_test_x", proxy).unwrap(),
            "postgres://postgres@127.0.0.1:41000/shop_test_x"
        );
        assert_eq!(
            through("redis://127.0.0.1:6379", proxy).unwrap(),
            "redis://127.0.0.1:41000"
        );
    }
}
