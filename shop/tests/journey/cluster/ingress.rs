//! The ingress controller: the rendered Ingresses of class `nginx` turned into an nginx
//! configuration the way ingress-nginx generates one (a server per host, `location = /p` and
//! `location /p/` for a Prefix path, `location = /p` for an Exact one, the standard proxy
//! headers, TLS from the Secret each `tls` entry names, a redirect to HTTPS for TLS hosts, a
//! default server answering 404), proxying to the ready endpoints of each backend Service:
//! `proxy_pass` to HTTP backends, `grpc_pass` to those annotated `backend-protocol: GRPC`.
//! Every annotation of ingress-nginx the chart sets must be translated here, or the test fails.
//!
//! nginx (Debian's) runs with its own prefix, pid, logs and temporary paths in the test's
//! directory, on ports 80 and 443 of a loopback address of its own; its workers run as nobody.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::process::Command;

use super::{
    node::Node,
    release::{Release, Secrets, name},
};
use crate::process::Process;

const NGINX: &str = "/usr/sbin/nginx";
const ANNOTATION: &str = "nginx.ingress.kubernetes.io/";

/// nginx in front of the release.
pub struct IngressController {
    /// The address it listens on (ports 80 and 443).
    pub ip: Ipv4Addr,
    dir: PathBuf,
    process: Process,
}

impl IngressController {
    /// Starts nginx for `release`'s Ingresses on `ip`, with the TLS Secrets of `secrets`; it
    /// also stands in for kube-proxy: each ClusterIP Service gets a virtual address of the node
    /// (in DNS too) where nginx forwards its ports to the ready endpoints.
    pub async fn start(release: &Release, node: &mut Node, secrets: &Secrets, dir: &Path) -> Self {
        let ip = node.address();
        let mut cluster_ips = Vec::new();
        for service in node.cluster_ip_services() {
            let cluster_ip = node.address();
            node.add_cluster_ip(cluster_ip, name(&service));
            cluster_ips.push((cluster_ip, service));
        }
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: apt-get install -y nginx-light"
        );
        let dir = dir.join("nginx");
        for sub in ["", "tls", "temp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
            fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(dir.join("temp"), fs::Permissions::from_mode(0o777)).unwrap();
        let mut conf = configuration(release, node, secrets, ip, &dir);
        let kube_proxy = kube_proxy(node, &cluster_ips);
        conf.insert_str(conf.rfind('}').unwrap(), &kube_proxy);
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut command = Command::new(NGINX);
        command
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg("daemon off;")
            .env_clear();
        let mut process = Process::start("nginx", command);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(SocketAddr::from((ip, 80)))
            .await
            .is_err()
        {
            process.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx does not listen: {}",
                fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { ip, dir, process }
    }

    /// How many requests for `host` each upstream address answered (from the access log; a
    /// request retried on another upstream counts for each).
    pub fn upstream_counts(&self, host: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let log = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        for line in log.lines() {
            let mut fields = line.split_whitespace();
            if fields.next() != Some(host) {
                continue;
            }
            for upstream in fields.nth(1).unwrap_or_default().split(", ").filter(|u| *u != "-") {
                *counts.entry(upstream.to_owned()).or_default() += 1;
            }
        }
        counts
    }

    /// Fails if nginx exited.
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }
}

impl Drop for IngressController {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for file in ["nginx.conf", "error.log"] {
                let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
                eprintln!("----- nginx: {file} -----\n{text}");
            }
        }
        // SIGKILL would leave the workers running: the master stops them on SIGTERM.
        self.process.terminate(Duration::from_secs(5));
    }
}

/// The configuration ingress-nginx would generate for the release's Ingresses.
fn configuration(release: &Release, node: &Node, secrets: &Secrets, ip: Ipv4Addr, dir: &Path) -> String {
    let mut upstreams = String::new();
    let mut servers = String::new();
    // The default certificate, for the default server (ingress-nginx's is self-signed too).
    let default_cert = tls_files(dir, "default", &self_signed("ingress.local"));
    for ingress in release.installed("Ingress") {
        assert_eq!(
            ingress["spec"]["ingressClassName"],
            "nginx",
            "{}: the class this controller serves",
            name(ingress)
        );
        let annotations = ingress["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut body_size = "1m".to_owned();
        let mut grpc = false;
        let mut ssl_redirect = true;
        let mut allow = Vec::new();
        for (key, value) in &annotations {
            let Some(annotation) = key.strip_prefix(ANNOTATION) else {
                continue;
            };
            let value = value.as_str().expect("annotation values are strings");
            match annotation {
                "proxy-body-size" => body_size = value.to_owned(),
                "backend-protocol" => match value {
                    "GRPC" => grpc = true,
                    "HTTP" => grpc = false,
                    other => panic!("{}: backend-protocol {other} is not translated", name(ingress)),
                },
                "ssl-redirect" => ssl_redirect = value == "true",
                "whitelist-source-range" => allow = value.split(',').map(|cidr| cidr.trim().to_owned()).collect(),
                other => panic!("{}: annotation {key} is not translated ({other})", name(ingress)),
            }
        }
        let tls = ingress["spec"]["tls"].as_array().cloned().unwrap_or_default();
        for rule in ingress["spec"]["rules"].as_array().expect("rules") {
            let host = rule["host"].as_str().expect("a host per rule");
            let secret = tls.iter().find(|entry| {
                entry["hosts"]
                    .as_array()
                    .is_some_and(|hosts| hosts.iter().any(|h| h == host))
            });
            let mut locations = String::new();
            for path in rule["http"]["paths"].as_array().expect("paths") {
                let backend = &path["backend"]["service"];
                let service = backend["name"].as_str().unwrap();
                let port = backend["port"].get("name").or(backend["port"].get("number")).unwrap();
                let upstream = format!(
                    "{}-{service}-{}",
                    node.namespace,
                    port.as_str().map_or_else(|| port.to_string(), str::to_owned)
                );
                if !upstreams.contains(&format!("upstream {upstream} ")) {
                    let endpoints = node.endpoints(service, port);
                    assert!(
                        !endpoints.is_empty(),
                        "Service {service}: no ready endpoint for the ingress"
                    );
                    let _ = writeln!(upstreams, "  upstream {upstream} {{");
                    for endpoint in endpoints {
                        let _ = writeln!(upstreams, "    server {endpoint} max_fails=0;");
                    }
                    let _ = writeln!(upstreams, "    keepalive 32;\n  }}");
                }
                let p = path["path"].as_str().unwrap_or("/");
                let matches: Vec<String> = match path["pathType"].as_str().unwrap() {
                    "Exact" => vec![format!("= {p}")],
                    "Prefix" if p == "/" => vec!["/".to_owned()],
                    "Prefix" => vec![
                        format!("= {}", p.trim_end_matches('/')),
                        format!("{}/", p.trim_end_matches('/')),
                    ],
                    other => panic!("pathType {other} is not translated"),
                };
                for matched in matches {
                    let _ = writeln!(locations, "    location {matched} {{");
                    for cidr in &allow {
                        let _ = writeln!(locations, "      allow {cidr};");
                    }
                    if !allow.is_empty() {
                        let _ = writeln!(locations, "      deny all;");
                    }
                    let _ = writeln!(locations, "      client_max_body_size {body_size};");
                    if grpc {
                        for (header, value) in proxy_headers() {
                            let _ = writeln!(locations, "      grpc_set_header {header} {value};");
                        }
                        let _ = writeln!(locations, "      grpc_pass grpc://{upstream};");
                    } else {
                        for (header, value) in proxy_headers() {
                            let _ = writeln!(locations, "      proxy_set_header {header} {value};");
                        }
                        let _ = writeln!(
                            locations,
                            "      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      \
                             proxy_pass http://{upstream};"
                        );
                    }
                    let _ = writeln!(locations, "    }}");
                }
            }
            match secret {
                Some(entry) => {
                    let secret_name = entry["secretName"].as_str().expect("tls.secretName");
                    let data = secrets
                        .get(secret_name)
                        .unwrap_or_else(|| panic!("{}: TLS Secret {secret_name} does not exist", name(ingress)));
                    let (cert, key) = tls_files(dir, secret_name, &(data["tls.crt"].clone(), data["tls.key"].clone()));
                    let _ = writeln!(
                        servers,
                        "  server {{\n    listen {ip}:443 ssl http2;\n    server_name {host};\n    \
                         ssl_certificate {cert};\n    ssl_certificate_key {key};\n{locations}  }}"
                    );
                    let plain = if ssl_redirect {
                        "    location / { return 308 https://$host$request_uri; }\n".to_owned()
                    } else {
                        locations
                    };
                    let _ = writeln!(
                        servers,
                        "  server {{\n    listen {ip}:80;\n    server_name {host};\n{plain}  }}"
                    );
                }
                None => {
                    let _ = writeln!(
                        servers,
                        "  server {{\n    listen {ip}:80;\n    server_name {host};\n{locations}  }}"
                    );
                }
            }
        }
    }
    let temp = dir.join("temp");
    let temp = temp.display();
    format!(
        "worker_processes 1;\npid {pid};\nuser nobody nogroup;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  log_format upstreams '$host $status $upstream_addr';\n  access_log {access} upstreams;\n  client_body_temp_path {temp}/body;\n  \
         proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  \
         scgi_temp_path {temp}/scgi;\n  server_tokens off;\n{upstreams}\
         \n  server {{\n    listen {ip}:80 default_server;\n    listen {ip}:443 ssl http2 default_server;\n    \
         ssl_certificate {cert};\n    ssl_certificate_key {key};\n    return 404;\n  }}\n{servers}}}\n",
        pid = dir.join("nginx.pid").display(),
        access = dir.join("access.log").display(),
        cert = default_cert.0,
        key = default_cert.1,
    )
}

/// kube-proxy's forwarding for ClusterIP Services: from each Service port on its cluster IP to
/// the ready endpoints of its target port (HTTP ports only: the chart has no other).
fn kube_proxy(node: &Node, services: &[(Ipv4Addr, Value)]) -> String {
    let mut conf = String::new();
    for (cluster_ip, service) in services {
        for port in service["spec"]["ports"].as_array().expect("ports") {
            assert_eq!(
                port["name"],
                "http",
                "{}: only HTTP ClusterIP ports are emulated",
                name(service)
            );
            let upstream = format!("cluster-ip-{}-{}", name(service), port["port"]);
            let _ = writeln!(conf, "  upstream {upstream} {{");
            for endpoint in node.endpoints(name(service), &port["port"]) {
                let _ = writeln!(conf, "    server {endpoint} max_fails=0;");
            }
            let _ = writeln!(
                conf,
                "  }}\n  server {{\n    listen {cluster_ip}:{};\n    location / {{ proxy_pass http://{upstream}; }}\n  }}",
                port["port"]
            );
        }
    }
    conf
}

/// The headers ingress-nginx sets on every proxied request.
fn proxy_headers() -> [(&'static str, &'static str); 8] {
    [
        ("Host", "$host"),
        ("X-Request-ID", "$request_id"),
        ("X-Real-IP", "$remote_addr"),
        ("X-Forwarded-For", "$remote_addr"),
        ("X-Forwarded-Host", "$host"),
        ("X-Forwarded-Port", "$server_port"),
        ("X-Forwarded-Proto", "$scheme"),
        ("X-Scheme", "$scheme"),
    ]
}

/// A certificate and its key, as PEM, for `host`.
pub fn self_signed(host: &str) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// Writes a certificate and its key where nginx reads them; their paths.
fn tls_files(dir: &Path, secret: &str, (cert, key): &(String, String)) -> (String, String) {
    let cert_path = dir.join("tls").join(format!("{secret}.crt"));
    let key_path = dir.join("tls").join(format!("{secret}.key"));
    fs::write(&cert_path, cert).unwrap();
    fs::write(&key_path, key).unwrap();
    (cert_path.display().to_string(), key_path.display().to_string())
}

/// A gRPC channel to `host` through the ingress at `ip:443`: TLS (trusting `ca_pem`) with ALPN
/// h2, as an internal team's client outside the cluster connects.
pub async fn grpc_channel(ip: Ipv4Addr, host: &str, ca_pem: &str) -> tonic::transport::Channel {
    use std::sync::Arc;

    use tokio_rustls::rustls::{self, pki_types::ServerName};

    let mut roots = rustls::RootCertStore::empty();
    let der = pem_to_der(ca_pem);
    roots.add(der.into()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(host.to_owned()).unwrap();
    let addr = SocketAddr::from((ip, 443));
    // tonic without its TLS features refuses an https URI: TLS is this connector's, and the
    // requests' :scheme and :authority come from the origin.
    tonic::transport::Endpoint::from_shared(format!("http://{host}"))
        .unwrap()
        .origin(format!("https://{host}").parse().unwrap())
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, server_name) = (connector.clone(), server_name.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .expect("a TLS connection through the gRPC ingress")
}

/// The DER bytes of a one-certificate PEM.
fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}
