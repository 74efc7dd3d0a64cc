//! Client-side discovery and balancing against real DNS: dnsmasq on loopback stands in for a
//! Kubernetes headless Service (one A record per ready pod, changed live with SIGHUP) and tonic
//! health servers on 127.0.0.x stand in for the pods. Needs `/usr/sbin/dnsmasq` (Debian
//! package `dnsmasq-base`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use shop_platform::grpc::client::{ClientOptions, GrpcChannel, Target, connect};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Status, transport::Server};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const NAME: &str = "catalog.shop.svc.cluster.local";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A dnsmasq serving `NAME` from a hosts file, killed on drop.
struct Dnsmasq {
    child: Child,
    dir: PathBuf,
    hosts: PathBuf,
    addr: SocketAddr,
}

impl Dnsmasq {
    async fn start(records: &[Ipv4Addr]) -> Self {
        assert!(
            std::path::Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: apt-get install -y dnsmasq-base"
        );
        let dir = std::env::temp_dir().join(format!("shop-dnsmasq-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        write_hosts(&hosts, records);
        // A port free for both UDP and TCP (dnsmasq listens on both).
        let port = loop {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let conf = dir.join("dnsmasq.conf");
        fs::write(
            &conf,
            format!(
                "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
                 local=/cluster.local/\nlocal-ttl=1\naddn-hosts={}\npid-file=\n\
                 log-facility=-\n",
                hosts.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("dnsmasq.log")).unwrap();
        let child = Command::new(DNSMASQ)
            .arg("-k")
            .arg("-C")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut dnsmasq = Self {
            child,
            dir,
            hosts,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        // Ready once it accepts TCP (it loads the hosts file before answering).
        let started = Instant::now();
        while tokio::net::TcpStream::connect(dnsmasq.addr).await.is_err() {
            if let Some(status) = dnsmasq.child.try_wait().unwrap() {
                panic!("dnsmasq exited with {status}: {}", dnsmasq.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "dnsmasq did not start: {}",
                dnsmasq.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        dnsmasq
    }

    /// Replaces the records and makes dnsmasq re-read them, as the Endpoints controller does
    /// when a pod becomes ready or goes away.
    fn set_records(&self, records: &[Ipv4Addr]) {
        write_hosts(&self.hosts, records);
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Writes the hosts file in one rename, so dnsmasq never reads half of it.
fn write_hosts(path: &PathBuf, records: &[Ipv4Addr]) {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).unwrap();
    for ip in records {
        writeln!(file, "{ip} {NAME}").unwrap();
    }
    file.sync_all().unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Listeners on `ips`, all on one port (the same container port on every pod).
async fn listeners(ips: &[Ipv4Addr]) -> (u16, Vec<TcpListener>) {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)).await {
                Ok(listener) => all.push(listener),
                Err(_) => break,
            }
        }
        if all.len() == ips.len() {
            return (port, all);
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// A health server counting the calls it served.
struct Backend {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    last_grpc_timeout: Arc<Mutex<Option<String>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Backend {
    fn start(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let last_grpc_timeout = Arc::new(Mutex::new(None));
        let (stop, stopped) = oneshot::channel::<()>();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let count = {
            let served = Arc::clone(&served);
            let last_grpc_timeout = Arc::clone(&last_grpc_timeout);
            tower::util::MapRequestLayer::new(move |request: http::Request<tonic::body::Body>| {
                served.fetch_add(1, Ordering::SeqCst);
                *last_grpc_timeout.lock().unwrap() = request
                    .headers()
                    .get("grpc-timeout")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                request
            })
        };
        let task = tokio::spawn(async move {
            Server::builder()
                .layer(count)
                .add_service(health)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            served,
            last_grpc_timeout,
            stop: Some(stop),
            task,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Graceful shutdown, as on SIGTERM: stops listening, drains, closes its connections.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("backend did not shut down")
            .unwrap();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Logs of the code under test (`RUST_LOG=shop_platform=debug`), shown for failed tests.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn options(nameserver: Option<SocketAddr>) -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        refresh_interval: Duration::from_millis(200),
        nameserver,
        ..ClientOptions::default()
    }
}

async fn check(channel: &GrpcChannel) -> Result<(), Status> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map(|_| ())
}

/// Runs `count` sequential calls (at least `min_duration` long) and returns the failures.
async fn calls(channel: &GrpcChannel, count: usize, min_duration: Duration) -> Vec<Status> {
    let pause = min_duration / u32::try_from(count).unwrap();
    let mut failures = Vec::new();
    for _ in 0..count {
        if let Err(status) = check(channel).await {
            failures.push(status);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    failures
}

fn counts(backends: &[Backend]) -> Vec<usize> {
    backends.iter().map(Backend::served).collect()
}

/// The whole life of a Service: balance over three pods, lose one, gain a fourth.
/// `keep_dead_record`: the dead pod stays in DNS for a while (it died before Kubernetes noticed).
async fn pods_come_and_go(keep_dead_record: bool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let ips = [ip(11), ip(12), ip(13), ip(14)];
    let (port, mut listeners) = listeners(&ips).await;
    let fourth_listener = listeners.pop().unwrap();
    let dns = Dnsmasq::start(&ips[..3]).await;
    let mut backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();

    let target = Target::parse(&format!("dns://{NAME}:{port}")).unwrap();
    let channel = connect(&target, &options(Some(dns.addr))).await.unwrap();

    // 1. Spread over the three pods.
    let failures = calls(&channel, 300, Duration::ZERO).await;
    assert!(failures.is_empty(), "{failures:?}");
    let served = counts(&backends);
    assert_eq!(served.iter().sum::<usize>(), 300);
    for (backend, served) in backends.iter().zip(&served) {
        assert!(*served > 45, "{} got {served} of 300 calls: {served:?}", backend.addr);
    }

    // 2. One pod dies; every call still succeeds.
    backends[2].stop().await;
    if !keep_dead_record {
        dns.set_records(&ips[..2]);
    }
    let before = counts(&backends);
    // Spread over more than a second: several refreshes see (or keep seeing) the dead pod.
    let failures = calls(&channel, 200, Duration::from_millis(1200)).await;
    assert!(failures.is_empty(), "{} failed: {failures:?}", failures.len());
    let after = counts(&backends);
    assert_eq!(after[2], before[2], "the stopped pod served calls");
    assert_eq!(after[0] + after[1] - before[0] - before[1], 200);
    if keep_dead_record {
        dns.set_records(&ips[..2]);
    }

    // 3. Scale-up: a fourth pod becomes ready and gets its record; it soon receives calls.
    let fourth = Backend::start(fourth_listener);
    assert_eq!(fourth.addr, SocketAddr::V4(SocketAddrV4::new(ips[3], port)));
    dns.set_records(&[ips[0], ips[1], ips[3]]);
    let started = Instant::now();
    while fourth.served() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new pod got no call within 5 s"
        );
        let failures = calls(&channel, 10, Duration::from_millis(50)).await;
        assert!(failures.is_empty(), "{failures:?}");
    }
    backends.push(fourth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_target_balances_fails_over_and_scales_up() {
    pods_come_and_go(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_pod_still_in_dns_costs_no_failed_call() {
    pods_come_and_go(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_target_spreads_calls_over_its_addresses() {
    init_logs();
    let (port, listeners) = listeners(&[ip(21), ip(22)]).await;
    let backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let target = Target::parse(&format!("static://127.0.0.21:{port},127.0.0.22:{port}")).unwrap();
    let channel = connect(&target, &options(None)).await.unwrap();

    let failures = calls(&channel, 100, Duration::ZERO).await;
    assert!(failures.is_empty(), "{failures:?}");
    let served = counts(&backends);
    assert_eq!(served.iter().sum::<usize>(), 100);
    assert!(served.iter().all(|n| *n > 20), "{served:?}");
}

/// The chart's targets are fully qualified with a final dot (`…svc.cluster.local.`), so that a
/// pod's resolver asks one name instead of walking its search list: that spelling resolves
/// and balances like the short one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fully_qualified_name_with_a_final_dot_resolves() {
    init_logs();
    let (port, listeners) = listeners(&[ip(71), ip(72)]).await;
    let backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let dns = Dnsmasq::start(&[ip(71), ip(72)]).await;
    let target = Target::parse(&format!("dns:///{NAME}.:{port}")).unwrap();
    let channel = connect(&target, &options(Some(dns.addr))).await.unwrap();
    let failures = calls(&channel, 60, Duration::ZERO).await;
    assert!(failures.is_empty(), "{failures:?}");
    let served = counts(&backends);
    assert!(served.iter().all(|n| *n > 10), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_dns_keeps_the_last_endpoints() {
    init_logs();
    let (port, listeners) = listeners(&[ip(31), ip(32)]).await;
    let backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let dns = Dnsmasq::start(&[ip(31), ip(32)]).await;
    let target = Target::parse(&format!("dns:///{NAME}:{port}")).unwrap();
    let channel = connect(&target, &options(Some(dns.addr))).await.unwrap();
    let failures = calls(&channel, 20, Duration::ZERO).await;
    assert!(failures.is_empty(), "{failures:?}");

    // The DNS server goes away for several refreshes: calls go on to the known pods.
    drop(dns);
    let failures = calls(&channel, 100, Duration::from_millis(800)).await;
    assert!(failures.is_empty(), "{failures:?}");
    let served = counts(&backends);
    assert!(served.iter().all(|n| *n > 10), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_is_sent_and_enforced() {
    init_logs();
    let (port, mut listeners) = listeners(&[ip(41), ip(42)]).await;
    // Accepts connections (the kernel does) but never answers: a hung pod.
    let hung = listeners.pop().unwrap();
    let backend = Backend::start(listeners.pop().unwrap());

    let target = Target::parse(&format!("127.0.0.41:{port}")).unwrap();
    let channel = connect(&target, &options(None)).await.unwrap();
    check(&channel).await.unwrap();
    let sent = backend.last_grpc_timeout.lock().unwrap().clone().unwrap();
    assert!(sent.ends_with('u') || sent.ends_with('m'), "{sent}");

    let target = Target::parse(&format!("http://127.0.0.42:{port}")).unwrap();
    let channel = connect(
        &target,
        &ClientOptions {
            request_timeout: Duration::from_millis(300),
            ..options(None)
        },
    )
    .await
    .unwrap();
    let started = Instant::now();
    let status = check(&channel).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A deadline the caller sets wins over the default.
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.set_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let status = HealthClient::new(channel.clone()).check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_millis(290));
    drop(hung);
}

/// What tonic alone does when a backend dies (the reason for `GrpcChannel`'s retry): its
/// balancer keeps the dead endpoint, reports it ready, and every call it picks fails with
/// `Unavailable` (connection refused) until the endpoint is removed. Should tonic ever eject
/// such endpoints itself, this test fails and the retry can be reconsidered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tonic_balancer_fails_calls_routed_to_a_dead_endpoint() {
    use tonic::transport::{Channel, Endpoint, channel::Change};

    let (port, listeners) = listeners(&[ip(51), ip(52), ip(53)]).await;
    let mut backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(16);
    for backend in &backends {
        let endpoint = Endpoint::from_shared(format!("http://{}", backend.addr)).unwrap();
        changes.send(Change::Insert(backend.addr, endpoint)).await.unwrap();
    }
    let health = |channel: Channel| async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest { service: String::new() })
            .await
    };
    for _ in 0..30 {
        health(channel.clone()).await.unwrap();
    }
    backends[2].stop().await;
    let mut failures = Vec::new();
    for _ in 0..90 {
        if let Err(status) = health(channel.clone()).await {
            failures.push(status);
        }
    }
    eprintln!(
        "plain tonic, 1 of 3 backends dead on port {port}: {} of 90 calls failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(!failures.is_empty());
    assert!(
        failures.iter().all(|status| status.code() == Code::Unavailable),
        "{failures:?}"
    );
}

/// A pod draining on SIGTERM while many calls are in flight: the calls caught by its GOAWAY or
/// queued on its closing connection were never processed, and are retried elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backend_draining_under_concurrent_load_fails_no_call() {
    init_logs();
    let ips = [ip(61), ip(62), ip(63)];
    let (port, listeners) = listeners(&ips).await;
    let mut backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let target = Target::parse(&format!(
        "static://127.0.0.61:{port},127.0.0.62:{port},127.0.0.63:{port}"
    ))
    .unwrap();
    let channel = connect(&target, &options(None)).await.unwrap();

    let (stop_callers, stopped) = tokio::sync::watch::channel(false);
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let channel = channel.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut calls = 0_usize;
                while !*stopped.borrow() {
                    if let Err(status) = check(&channel).await {
                        failures.push(status);
                    }
                    calls += 1;
                }
                (calls, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = backends[2].served();
    backends[2].stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_callers.send(true).unwrap();

    let mut calls = 0;
    let mut failures = Vec::new();
    for caller in callers {
        let (made, failed) = tokio::time::timeout(Duration::from_secs(5), caller)
            .await
            .expect("a caller hung")
            .unwrap();
        calls += made;
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} failed: {failures:?}",
        failures.len()
    );
    assert!(before > 0, "the drained pod never served");
    assert!(calls > 200, "only {calls} calls");
}
