//! A running shop to drive over REST, in one of its two shapes:
//!
//! - the deployment: the four real binaries (`shop-catalog`, `shop-user`, `shop-order`,
//!   `shop-gateway`) as separate processes on loopback, against PostgreSQL (a fresh database),
//!   Redis (a fresh key prefix), RabbitMQ (fresh queue names) and a real SMTP server;
//! - the one-process `shop` binary on its embedded defaults (SQLite under a temporary data
//!   directory, in-process cache and queue, codes written to its log).
//!
//! Every process listens on a port the system picks (port 0) and logs it; the next one is
//! started with that address. The stack is ready when the gateway's `/readyz` says so. The
//! separate processes get mesh keys as a deployment does (`SHOP_MESH_KEY` each,
//! `SHOP_MESH_TRUST` shared); the one-process binary makes its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::Method;
use shop_platform::{
    grpc::mesh::{MeshKey, encode_public},
    testing::{self, amqp_url, create_postgres_database, redis_url, unique_name},
};
use tokio::process::Command;

use crate::{
    api::Api,
    mail::{Mailbox, SmtpSink},
    process::{Process, binary, log_fields},
};

/// Paid orders ship this long after payment.
pub const SHIP_AFTER: Duration = Duration::from_secs(4);
/// Shipped orders are delivered this long after shipping.
pub const DELIVER_AFTER: Duration = Duration::from_secs(2);
/// The bootstrapped admin account.
pub const ADMIN_EMAIL: &str = "root@shop.example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "b00tstrap-Admin!";

/// How long a process may take to start listening (migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the gateway may take to report every service ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Ed25519 key the user service signs access tokens with (`SHOP_JWT_SIGNING_KEYS`).
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// Its key id.
    pub kid: String,
    /// Its 32-byte seed.
    pub seed: [u8; 32],
}

impl SigningKey {
    /// A fresh random key named `kid`.
    pub fn random(kid: &str) -> Self {
        let mut seed = [0; 32];
        seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self {
            kid: kid.to_owned(),
            seed,
        }
    }

    /// The `SHOP_JWT_SIGNING_KEYS` entry.
    pub fn setting(&self) -> String {
        format!("{}={}", self.kid, URL_SAFE_NO_PAD.encode(self.seed))
    }
}

/// A running shop.
pub struct Stack {
    /// Which shape it is, for messages.
    pub shape: &'static str,
    /// Its public REST API.
    pub api: Api,
    /// Where its mails are read.
    pub mail: Mailbox,
    /// The key its access tokens are signed with.
    pub signing_key: SigningKey,
    /// Where the services' gRPC servers listen (`user`, `catalog`, `order`), for tests that
    /// knock on them directly.
    pub grpc: Vec<(&'static str, String)>,
    /// The environment every process of the stack shares (to start more gateways).
    env: Vec<(String, String)>,
    /// The mesh key of each separate process, by binary name.
    mesh_keys: Vec<(&'static str, String)>,
    /// The processes, in start order.
    processes: Vec<Process>,
    /// The RabbitMQ queues of the stack, deleted when it stops.
    queues: Vec<String>,
    /// The embedded stores of the one-process shape.
    _data_dir: Option<tempfile::TempDir>,
}

/// Settings common to both shapes.
fn common_env(signing_key: &SigningKey) -> Vec<(String, String)> {
    [
        ("RUST_LOG", "info".to_owned()),
        ("SHOP_LOG_FORMAT", "json".to_owned()),
        // Every process serves its metrics on a free port.
        ("SHOP_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("SHOP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("SHOP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("SHOP_JWT_SIGNING_KEYS", signing_key.setting()),
        ("SHOP_SHIP_AFTER", format!("{}ms", SHIP_AFTER.as_millis())),
        ("SHOP_DELIVER_AFTER", format!("{}ms", DELIVER_AFTER.as_millis())),
        ("SHOP_ORDER_SHIPMENT_INTERVAL", "200ms".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

impl Stack {
    /// The four service binaries as separate processes, on PostgreSQL, Redis, RabbitMQ and a
    /// real SMTP server; `gateway_env` is added to the gateway's environment only.
    pub async fn services(gateway_env: &[(&str, &str)]) -> Self {
        Self::services_with(|name| {
            if name == "shop-gateway" {
                gateway_env
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .await
    }

    /// As [`Stack::services`], with `extra(binary)` added to the environment of each binary
    /// (`shop-catalog`, `shop-user`, `shop-order`, `shop-gateway`).
    pub async fn services_with(extra: impl Fn(&str) -> Vec<(String, String)>) -> Self {
        let sink = SmtpSink::start().await;
        let signing_key = SigningKey::random("e2e-1");
        let run = unique_name("e2e");
        let queue_env = testing::run_queues(&run);
        let queues: Vec<String> = queue_env.iter().map(|(_, queue)| queue.clone()).collect();
        let mut env = common_env(&signing_key);
        let mesh_keys: Vec<(&'static str, MeshKey)> = ["shop-gateway", "shop-user", "shop-catalog", "shop-order"]
            .into_iter()
            .map(|name| (name, MeshKey::generate()))
            .collect();
        let trust: Vec<String> = mesh_keys
            .iter()
            .map(|(name, key)| {
                format!(
                    "{}={}",
                    name.trim_start_matches("shop-"),
                    encode_public(&key.public_key())
                )
            })
            .collect();
        env.push(("SHOP_MESH_TRUST".to_owned(), trust.join(" ")));
        let mesh_keys: Vec<(&'static str, String)> = mesh_keys
            .into_iter()
            .map(|(name, key)| (name, key.to_base64()))
            .collect();
        let key_of = |binary: &str| {
            mesh_keys
                .iter()
                .find(|(name, _)| *name == binary)
                .map(|(_, key)| key.clone())
                .unwrap()
        };
        let mut grpc = Vec::new();
        env.extend(
            [
                ("DATABASE_URL", create_postgres_database().await),
                ("REDIS_URL", redis_url()),
                ("AMQP_URL", amqp_url()),
                ("SMTP_URL", format!("smtp://127.0.0.1:{}", sink.port)),
                ("SHOP_CACHE_PREFIX", format!("{run}:")),
            ]
            .into_iter()
            .chain(queue_env)
            .map(|(key, value)| (key.to_owned(), value)),
        );
        let mut processes = Vec::new();
        // Each service learns the addresses of those it calls, so they start in this order.
        for (name, target) in [
            ("shop-catalog", "SHOP_CATALOG_TARGET"),
            ("shop-user", "SHOP_USER_TARGET"),
            ("shop-order", "SHOP_ORDER_TARGET"),
        ] {
            let mut command = Command::new(binary(name));
            command
                .env_clear()
                .envs(env.clone())
                .env("SHOP_MESH_KEY", key_of(name))
                .env("SHOP_GRPC_ADDR", "127.0.0.1:0")
                .envs(extra(name));
            let mut process = Process::start(name, command);
            let addr = process
                .wait_for_line("its gRPC address", START_TIMEOUT, |line| {
                    Some(log_fields(line, "listening")?.get("grpc")?.as_str()?.to_owned())
                })
                .await;
            processes.push(process);
            env.push((target.to_owned(), format!("http://{addr}")));
            grpc.push((name.trim_start_matches("shop-"), addr));
        }
        let mut stack = Self {
            shape: "separate services",
            api: Api::new(String::new()),
            mail: Mailbox::Smtp(sink),
            signing_key,
            grpc,
            env,
            mesh_keys,
            processes,
            queues,
            _data_dir: None,
        };
        let gateway_env = extra("shop-gateway");
        let gateway_env: Vec<(&str, &str)> = gateway_env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        stack.api = stack.start_gateway(&gateway_env).await;
        stack
    }

    /// The RabbitMQ stock queue of `kind` (`reserve`, `release`, `results`) of the separate
    /// services.
    pub fn queue(&self, kind: &str) -> &str {
        let suffix = format!(".stock.{kind}");
        self.queues
            .iter()
            .find(|queue| queue.ends_with(&suffix))
            .unwrap_or_else(|| panic!("no {kind} queue in {:?}", self.queues))
    }

    /// Where each process serves `GET /metrics` (as it logged at start): `(process, address)`.
    pub async fn metrics_addrs(&mut self) -> Vec<(String, String)> {
        let mut addrs = Vec::new();
        for process in &mut self.processes {
            let addr = process
                .wait_for_line("its metrics address", START_TIMEOUT, |line| {
                    Some(
                        log_fields(line, "serving Prometheus metrics at /metrics")?
                            .get("addr")?
                            .as_str()?
                            .to_owned(),
                    )
                })
                .await;
            addrs.push((process.name().to_owned(), addr));
        }
        addrs
    }

    /// Fails if a process of the stack has exited, or wrote a line containing `never` (a
    /// thread of it panicked, say, while the process ran on).
    pub fn assert_running_without(&mut self, never: &str) {
        for process in &mut self.processes {
            process.assert_running();
            let lines = process.output().lines_from(0);
            if let Some(line) = lines.iter().find(|line| line.contains(never)) {
                panic!("{} wrote {never:?}: {line}", process.name());
            }
        }
    }

    /// One more `shop-gateway` in front of the services of this stack (a replica, sharing its
    /// Redis prefix), with `extra` added to its environment; ready when this returns.
    pub async fn start_gateway(&mut self, extra: &[(&str, &str)]) -> Api {
        let mut command = Command::new(binary("shop-gateway"));
        command
            .env_clear()
            .envs(self.env.clone())
            .envs(
                self.mesh_keys
                    .iter()
                    .filter(|(name, _)| *name == "shop-gateway")
                    .map(|(_, key)| ("SHOP_MESH_KEY", key)),
            )
            .env("SHOP_HTTP_ADDR", "127.0.0.1:0")
            .envs(extra.iter().copied());
        let gateways = self.processes.len().saturating_sub(3);
        let name = if gateways == 0 {
            "shop-gateway".to_owned()
        } else {
            format!("shop-gateway (replica {gateways})")
        };
        let mut process = Process::start(&name, command);
        let addr = process
            .wait_for_line("its HTTP address", START_TIMEOUT, |line| {
                Some(log_fields(line, "gateway listening")?.get("http")?.as_str()?.to_owned())
            })
            .await;
        self.processes.push(process);
        let api = Api::new(format!("http://{addr}"));
        self.wait_until_ready(&api).await;
        api
    }

    /// The process id of the process started as `name`.
    pub fn pid(&self, name: &str) -> u32 {
        self.processes
            .iter()
            .find(|process| process.name() == name)
            .and_then(|process| process.id())
            .unwrap_or_else(|| panic!("no running process named {name}"))
    }

    /// Kills the process started as `name` (e.g. `shop-catalog`), as a crash or an outage would.
    pub fn kill(&mut self, name: &str) {
        let before = self.processes.len();
        // Dropping a process kills it.
        self.processes.retain(|process| process.name() != name);
        assert_eq!(self.processes.len() + 1, before, "no single process named {name}");
    }

    /// The one-process `shop` binary on its embedded defaults.
    pub async fn one_process() -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let signing_key = SigningKey::random("e2e-1");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
        command
            .env_clear()
            .envs(common_env(&signing_key))
            .env("SHOP_DATA_DIR", data_dir.path())
            .env("SHOP_HTTP_ADDR", "127.0.0.1:0")
            .env("SHOP_USER_GRPC_ADDR", "127.0.0.1:0")
            .env("SHOP_CATALOG_GRPC_ADDR", "127.0.0.1:0")
            .env("SHOP_ORDER_GRPC_ADDR", "127.0.0.1:0");
        let mut process = Process::start("shop", command);
        // "  REST gateway    http://127.0.0.1:PORT/api/v1  (health: …)"
        let origin = process
            .wait_for_line("its REST address", START_TIMEOUT, |line| {
                let rest = line.trim_start().strip_prefix("REST gateway")?.trim_start();
                Some(rest.split("/api/v1").next()?.to_owned())
            })
            .await;
        // "  user service    grpc://127.0.0.1:PORT"
        let mut grpc = Vec::new();
        for name in ["user", "catalog", "order"] {
            let addr = process
                .wait_for_line("its gRPC addresses", START_TIMEOUT, |line| {
                    let rest = line
                        .trim_start()
                        .strip_prefix(name)?
                        .trim_start()
                        .strip_prefix("service")?;
                    Some(rest.trim().strip_prefix("grpc://")?.to_owned())
                })
                .await;
            grpc.push((name, addr));
        }
        let mut stack = Self {
            shape: "one process",
            api: Api::new(origin),
            mail: Mailbox::log(process.output()),
            signing_key,
            grpc,
            env: Vec::new(),
            mesh_keys: Vec::new(),
            processes: vec![process],
            queues: Vec::new(),
            _data_dir: Some(data_dir),
        };
        stack.wait_until_ready(&stack.api.clone()).await;
        stack
    }

    /// Polls `/readyz` of `api` until it answers 200; fails if a process exits meanwhile.
    async fn wait_until_ready(&mut self, api: &Api) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let reply = api.at(Method::GET, "/readyz").send().await;
            if reply.status == 200 {
                assert_eq!(reply.body["status"], "ready", "{reply:?}");
                return;
            }
            for process in &mut self.processes {
                process.assert_running();
            }
            assert!(
                Instant::now() < deadline,
                "{}: not ready within {READY_TIMEOUT:?}: {reply:?}",
                self.shape
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The processes go first (killed), so that nothing declares the queues again; then the
        // queues: idle quorum queues left by every run hold the broker's file handles until it
        // stops answering.
        self.processes.clear();
        let queues = std::mem::take(&mut self.queues);
        if !queues.is_empty() {
            testing::delete_queues_blocking(queues);
        }
    }
}
