//! One node of the cluster in a box: the kubelet, the Endpoints controller and the cluster DNS.
//!
//! - A pod is its container's binary run as a local process on a loopback address of its own
//!   (127.a.b.x, the block chosen per run), so every replica listens on the rendered port. Its
//!   environment is exactly the rendered one (nothing inherited); the only rewrite is the
//!   wildcard listen address `0.0.0.0:<port>`, which in a pod means the pod's own address.
//!   Like the kubelet, which mounts a resolv.conf into every container, each process runs in a
//!   mount namespace of its own (`unshare --mount`) with /etc/resolv.conf pointing at the test's
//!   DNS server, with the cluster's search list and `ndots:5`.
//! - The rendered probes run as the kubelet runs them: the startup probe until it passes
//!   (failing the test past `failureThreshold`), then readiness and liveness at their periods.
//! - Each headless Service is a name served by dnsmasq (listening on port 53 of its own loopback
//!   address, as resolv.conf knows no port) with one record per ready pod its selector matches;
//!   the records are rewritten and dnsmasq re-reads them (SIGHUP) whenever readiness changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::process::Command;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use super::release::{PodMeta, Release, Secrets, binary_of, container_env, container_port, name, selects};
use crate::process::{Process, binary};

/// The cluster's DNS domain (the kubelet's `--cluster-domain` default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// How long a Job or a `helm test` pod may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The state of one pod the probes and the Endpoints controller share.
struct PodState {
    name: String,
    ip: Ipv4Addr,
    labels: Value,
    ready: bool,
    /// Why the kubelet would restart it (a failed startup or liveness probe).
    failed: Option<String>,
}

/// A running pod.
pub struct Pod {
    /// Its name (`<deployment>-<n>`).
    pub name: String,
    /// The Deployment it belongs to.
    pub owner: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its environment as started.
    pub env: Vec<(String, String)>,
    container: Value,
    process: Process,
    prober: tokio::task::JoinHandle<()>,
}

impl Pod {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.id().expect("a running pod")
    }

    /// Its output so far, one entry per line.
    pub fn lines(&self) -> Vec<String> {
        self.process.output().lines_from(0)
    }
}

/// The node: its pods, its DNS server, its files.
pub struct Node {
    /// The namespace of the release.
    pub namespace: String,
    dir: PathBuf,
    block: [u8; 2],
    next_host: u8,
    /// Pods created so far per Deployment (names are never reused).
    created: BTreeMap<String, usize>,
    secrets: Secrets,
    services: Vec<Value>,
    pods: Vec<Pod>,
    states: Arc<Mutex<Vec<PodState>>>,
    /// Records of ClusterIP Services: (cluster IP, Service name).
    cluster_ips: Arc<Mutex<Vec<(Ipv4Addr, String)>>>,
    dns: Dns,
    endpoints: tokio::task::JoinHandle<()>,
}

impl Node {
    /// A node for `release`'s objects with `secrets`, its files under `dir`; its DNS is up.
    pub async fn start(release: &Release, secrets: Secrets, dir: &Path) -> Self {
        assert!(
            fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0")),
            "the cluster in a box runs as root: each pod gets its own /etc/resolv.conf in a mount \
             namespace, and the DNS server listens on port 53"
        );
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        // A /24 of loopback addresses nobody else uses (the other tests use 127.0.0.x).
        let seed = uuid::Uuid::new_v4().as_u128();
        let block = [100 + (seed % 150) as u8, ((seed >> 8) % 256) as u8];
        let dns_ip = Ipv4Addr::new(127, block[0], block[1], 53);
        let namespace = release
            .installed("Deployment")
            .first()
            .and_then(|deployment| deployment["metadata"]["namespace"].as_str())
            .expect("a Deployment with a namespace")
            .to_owned();
        let dns = Dns::start(dir, dns_ip).await;
        fs::write(
            dir.join("resolv.conf"),
            format!(
                "search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n\
                 nameserver {dns_ip}\noptions ndots:5\n"
            ),
        )
        .unwrap();
        let services: Vec<Value> = release.installed("Service").into_iter().cloned().collect();
        let states = Arc::new(Mutex::new(Vec::new()));
        let cluster_ips = Arc::new(Mutex::new(Vec::new()));
        let endpoints = tokio::spawn(endpoints_controller(
            Arc::clone(&states),
            Arc::clone(&cluster_ips),
            services.clone(),
            namespace.clone(),
            dns.hosts.clone(),
            dns.pid,
        ));
        Self {
            namespace,
            dir: dir.to_owned(),
            block,
            next_host: 10,
            created: BTreeMap::new(),
            secrets,
            services,
            pods: Vec::new(),
            states,
            cluster_ips,
            dns,
            endpoints,
        }
    }

    /// A fresh loopback address of this node's block.
    pub fn address(&mut self) -> Ipv4Addr {
        let host = self.next_host;
        self.next_host += 1;
        Ipv4Addr::new(127, self.block[0], self.block[1], host)
    }

    /// A command running `container` of pod `meta` as the kubelet would: its binary and args,
    /// exactly its environment, the node's resolv.conf mounted over /etc/resolv.conf.
    fn command(&self, meta: &PodMeta<'_>, container: &Value) -> (Command, Vec<(String, String)>) {
        assert!(
            container.get("command").is_none(),
            "{}: a command replacing the image's entrypoint is not emulated",
            meta.name
        );
        let program = binary(binary_of(container["image"].as_str().expect("an image")));
        let args: Vec<&str> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|arg| arg.as_str().expect("a string arg"))
            .collect();
        let env: Vec<(String, String)> = container_env(meta, container, &self.secrets)
            .into_iter()
            .map(|(key, value)| match value.strip_prefix("0.0.0.0:") {
                Some(port) => (key, format!("{}:{port}", meta.ip)),
                None => (key, value),
            })
            .collect();
        let mut command = Command::new("/usr/bin/unshare");
        command
            .arg("--mount")
            .arg("/bin/sh")
            .arg("-c")
            .arg(r#"/usr/bin/mount --bind "$0" /etc/resolv.conf && exec /usr/bin/env -u PWD "$@""#)
            .arg(self.dir.join("resolv.conf"))
            .arg(program)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir("/");
        (command, env)
    }

    /// Runs the pod template of `job` (a Job or a bare Pod) to completion; fails unless it
    /// succeeds within a minute.
    pub async fn run_to_completion(&mut self, object: &Value) {
        let spec = if object["kind"] == "Job" {
            &object["spec"]["template"]["spec"]
        } else {
            &object["spec"]
        };
        let pod_name = name(object).to_owned();
        let ip = self.address();
        let meta = PodMeta {
            name: &pod_name,
            namespace: &self.namespace,
            ip,
        };
        let containers = spec["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{pod_name}: one container");
        let (command, _) = self.command(&meta, &containers[0]);
        let mut process = Process::start(&pod_name, command);
        let status = process.wait(RUN_TIMEOUT).await;
        assert!(status.success(), "{pod_name} failed ({status}); its output follows");
        // It succeeded: its output is not worth printing if the test fails later.
        process.forget_output();
    }

    /// Starts the replicas `deployment` asks for.
    pub fn start_deployment(&mut self, deployment: &Value) {
        let replicas = deployment["spec"]["replicas"]
            .as_u64()
            .expect("replicas (no autoscaler)");
        for _ in 0..replicas {
            self.add_replica(deployment);
        }
    }

    /// Starts one more pod of `deployment`; returns its name.
    pub fn add_replica(&mut self, deployment: &Value) -> String {
        let owner = name(deployment).to_owned();
        let index = self.created.entry(owner.clone()).or_default();
        *index += 1;
        let pod_name = format!("{owner}-{index}");
        let ip = self.address();
        let template = &deployment["spec"]["template"];
        let containers = template["spec"]["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{owner}: one container per pod");
        let container = containers[0].clone();
        let meta = PodMeta {
            name: &pod_name,
            namespace: &self.namespace,
            ip,
        };
        let (command, env) = self.command(&meta, &container);
        let process = Process::start(&pod_name, command);
        self.states.lock().unwrap().push(PodState {
            name: pod_name.clone(),
            ip,
            labels: template["metadata"]["labels"].clone(),
            ready: false,
            failed: None,
        });
        let prober = tokio::spawn(kubelet_probes(
            pod_name.clone(),
            ip,
            container.clone(),
            Arc::clone(&self.states),
        ));
        self.pods.push(Pod {
            name: pod_name.clone(),
            owner,
            ip,
            env,
            container,
            process,
            prober,
        });
        pod_name
    }

    /// Kills pod `name` (SIGKILL, as a crashed node or an OOM kill would); the kubelet sees its
    /// container gone and the Endpoints controller takes its address out of DNS.
    pub fn kill(&mut self, pod_name: &str) -> Pod {
        let at = self
            .pods
            .iter()
            .position(|pod| pod.name == pod_name)
            .expect("a running pod");
        let mut pod = self.pods.remove(at);
        pod.process.kill();
        pod.prober.abort();
        self.states.lock().unwrap().retain(|state| state.name != pod_name);
        pod
    }

    /// The running pods.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Waits until every running pod is ready; fails on a failed probe, an exited process or
    /// after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_healthy();
            let waiting: Vec<String> = self
                .states
                .lock()
                .unwrap()
                .iter()
                .filter(|state| !state.ready)
                .map(|state| state.name.clone())
                .collect();
            if waiting.is_empty() {
                // One more round of the Endpoints controller, so DNS has every ready pod.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            assert!(Instant::now() < deadline, "not ready within {timeout:?}: {waiting:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails if a pod exited or the kubelet would have restarted it.
    pub fn assert_healthy(&mut self) {
        for pod in &mut self.pods {
            pod.process.assert_running();
        }
        let failed: Vec<String> = self
            .states
            .lock()
            .unwrap()
            .iter()
            .filter_map(|state| Some(format!("pod {}: {}", state.name, state.failed.as_ref()?)))
            .collect();
        assert!(failed.is_empty(), "{}", failed.join("; "));
    }

    /// The ready endpoints of Service `service`'s port `port` (name or number): what
    /// ingress-nginx proxies to.
    pub fn endpoints(&self, service: &str, port: &Value) -> Vec<SocketAddrV4> {
        let svc = self
            .services
            .iter()
            .find(|svc| name(svc) == service)
            .unwrap_or_else(|| panic!("the chart renders no Service {service}"));
        let declared = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|declared| match port {
                Value::String(wanted) => declared["name"] == *wanted,
                number => declared["port"] == *number,
            })
            .unwrap_or_else(|| panic!("Service {service} has no port {port}"));
        let target = declared.get("targetPort").unwrap_or(&declared["port"]).clone();
        let ready: Vec<String> = self
            .states
            .lock()
            .unwrap()
            .iter()
            .filter(|state| state.ready && selects(&svc["spec"]["selector"], &state.labels))
            .map(|state| state.name.clone())
            .collect();
        self.pods
            .iter()
            .filter(|pod| ready.contains(&pod.name))
            .map(|pod| SocketAddrV4::new(pod.ip, container_port(&pod.container, &target)))
            .collect()
    }

    /// Gives ClusterIP Service `service` the virtual address `ip` in DNS (kube-proxy's part,
    /// forwarding from it to the endpoints, is the ingress controller's here).
    pub fn add_cluster_ip(&self, ip: Ipv4Addr, service: &str) {
        self.cluster_ips.lock().unwrap().push((ip, service.to_owned()));
    }

    /// The Services of the release that are not headless.
    pub fn cluster_ip_services(&self) -> Vec<Value> {
        self.services
            .iter()
            .filter(|svc| svc["spec"]["clusterIP"] != "None")
            .cloned()
            .collect()
    }

    /// The names dnsmasq was asked for, in order.
    pub fn dns_queries(&self) -> Vec<String> {
        self.dns.queries()
    }

    /// The fully qualified name of Service `service`.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc.{CLUSTER_DOMAIN}", self.namespace)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.endpoints.abort();
        for pod in &self.pods {
            pod.prober.abort();
        }
        // The processes die with their `Process` (SIGKILL), dnsmasq with its own drop.
        self.pods.clear();
    }
}

/// The kubelet's probes of one container, reported into `states`.
async fn kubelet_probes(pod: String, ip: Ipv4Addr, container: Value, states: Arc<Mutex<Vec<PodState>>>) {
    let update = |change: &dyn Fn(&mut PodState)| {
        if let Some(state) = states.lock().unwrap().iter_mut().find(|state| state.name == pod) {
            change(state);
        }
    };
    let period = |probe: &Value| Duration::from_secs(probe["periodSeconds"].as_u64().unwrap_or(10));
    let threshold = |probe: &Value| probe["failureThreshold"].as_u64().unwrap_or(3);
    let startup = &container["startupProbe"];
    if startup.is_object() {
        let mut failures = 0;
        loop {
            if probe(ip, &container, startup).await {
                break;
            }
            failures += 1;
            if failures >= threshold(startup) {
                update(&|state| state.failed = Some("its startup probe failed: the kubelet restarts it".to_owned()));
                return;
            }
            tokio::time::sleep(period(startup)).await;
        }
    }
    let readiness = &container["readinessProbe"];
    let liveness = &container["livenessProbe"];
    let started = Instant::now();
    let (mut next_ready, mut next_live) = (started, started);
    let (mut ready_failures, mut live_failures) = (0, 0);
    loop {
        let now = Instant::now();
        if readiness.is_object() && now >= next_ready {
            if probe(ip, &container, readiness).await {
                ready_failures = 0;
                update(&|state| state.ready = true);
            } else {
                ready_failures += 1;
                if ready_failures >= threshold(readiness) {
                    update(&|state| state.ready = false);
                }
            }
            next_ready = now + period(readiness);
        } else if !readiness.is_object() {
            update(&|state| state.ready = true);
        }
        if liveness.is_object() && now >= next_live {
            if probe(ip, &container, liveness).await {
                live_failures = 0;
            } else {
                live_failures += 1;
                if live_failures >= threshold(liveness) {
                    update(&|state| {
                        state.failed = Some("its liveness probe failed: the kubelet restarts it".to_owned())
                    });
                }
            }
            next_live = now + period(liveness);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One probe (`grpc` or `httpGet`) of `container` at `ip`; true when it passes.
async fn probe(ip: Ipv4Addr, container: &Value, spec: &Value) -> bool {
    let timeout = Duration::from_secs(spec["timeoutSeconds"].as_u64().unwrap_or(1));
    if let Some(grpc) = spec.get("grpc") {
        let port = container_port(container, &grpc["port"]);
        let service = grpc["service"].as_str().unwrap_or_default().to_owned();
        let call = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{ip}:{port}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest { service })
                .await
                .ok()?;
            Some(reply.into_inner().status == ServingStatus::Serving as i32)
        };
        tokio::time::timeout(timeout, call)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    } else if let Some(http) = spec.get("httpGet") {
        let port = container_port(container, &http["port"]);
        let path = http["path"].as_str().unwrap_or("/");
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
        match client.get(format!("http://{ip}:{port}{path}")).send().await {
            Ok(response) => (200..400).contains(&response.status().as_u16()),
            Err(_) => false,
        }
    } else {
        panic!("probe {spec} is not emulated (grpc and httpGet are)");
    }
}

/// The Endpoints controller: every 100 ms, one DNS record per ready pod behind each headless
/// Service; dnsmasq re-reads them on SIGHUP when they changed.
async fn endpoints_controller(
    states: Arc<Mutex<Vec<PodState>>>,
    cluster_ips: Arc<Mutex<Vec<(Ipv4Addr, String)>>>,
    services: Vec<Value>,
    namespace: String,
    hosts: PathBuf,
    dns_pid: u32,
) {
    let mut last = String::new();
    loop {
        let mut records = String::new();
        {
            let states = states.lock().unwrap();
            for svc in services.iter().filter(|svc| svc["spec"]["clusterIP"] == "None") {
                let publish_not_ready = svc["spec"]["publishNotReadyAddresses"].as_bool().unwrap_or(false);
                for state in states.iter() {
                    if (state.ready || publish_not_ready) && selects(&svc["spec"]["selector"], &state.labels) {
                        records.push_str(&format!(
                            "{} {}.{namespace}.svc.{CLUSTER_DOMAIN}\n",
                            state.ip,
                            name(svc)
                        ));
                    }
                }
            }
        }
        for (ip, service) in cluster_ips.lock().unwrap().iter() {
            records.push_str(&format!("{ip} {service}.{namespace}.svc.{CLUSTER_DOMAIN}\n"));
        }
        if records != last {
            write_atomically(&hosts, &records);
            let status = std::process::Command::new("kill")
                .arg("-HUP")
                .arg(dns_pid.to_string())
                .status()
                .unwrap();
            assert!(status.success(), "dnsmasq is gone");
            last = records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.sync_all().unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// dnsmasq as the cluster DNS: authoritative for the cluster domain, records from a hosts
/// file, every query logged.
struct Dns {
    child: std::process::Child,
    pid: u32,
    hosts: PathBuf,
    log: PathBuf,
}

impl Dns {
    async fn start(dir: &Path, ip: Ipv4Addr) -> Self {
        assert!(
            Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: apt-get install -y dnsmasq-base"
        );
        let hosts = dir.join("cluster-dns.hosts");
        write_atomically(&hosts, "");
        let log = dir.join("dnsmasq.log");
        let conf = dir.join("dnsmasq.conf");
        fs::write(
            &conf,
            format!(
                "port=53\nlisten-address={ip}\nbind-interfaces\nno-resolv\nno-hosts\n\
                 local=/{CLUSTER_DOMAIN}/\nlocal-ttl=1\naddn-hosts={}\npid-file=\nuser=root\n\
                 log-queries\nlog-facility={}\n",
                hosts.display(),
                log.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(DNSMASQ)
            .arg("-k")
            .arg("-C")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut dns = Self {
            pid: child.id(),
            child,
            hosts,
            log,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(SocketAddr::from((ip, 53)))
            .await
            .is_err()
        {
            if let Some(status) = dns.child.try_wait().unwrap() {
                panic!(
                    "dnsmasq exited with {status}: {}",
                    fs::read_to_string(&dns.log).unwrap_or_default()
                );
            }
            assert!(started.elapsed() < Duration::from_secs(5), "dnsmasq did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        dns
    }

    /// The names asked, from its log (`query[A] name from addr`).
    fn queries(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find("query[")?..];
                Some(rest.split_whitespace().nth(1)?.to_owned())
            })
            .collect()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
