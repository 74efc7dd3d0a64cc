//! `<binary> probe …`: one health check from the command line, answered by the exit code.
//!
//! The images are distroless (no shell, no curl, no grpc-health-probe), so the binaries probe
//! themselves: `helm test` runs the service's own image with `probe grpc <target>` and the
//! gateway's with `probe http <url>`, and an operator can do the same with `kubectl exec`.
//!
//! - `probe grpc TARGET [SERVICE]`: the standard gRPC health check (`grpc.health.v1`) of
//!   `SERVICE` (the whole server when absent) through the platform's own client, so `TARGET`
//!   is any form [`Target`] takes, `dns:///user.shop.svc.cluster.local.:50051` included;
//!   passes when the answer is SERVING.
//! - `probe http URL`: `GET URL` (plain HTTP); passes on a 2xx status.
//!
//! Exit codes: 0 passed, 1 failed (the reason on stderr), 64 bad command line.

use std::{process::ExitCode, time::Duration};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{
    config::EXIT_BAD_CONFIG,
    grpc::client::{ClientOptions, Target, connect},
};

/// How long one probe may take in all.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A probe asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The gRPC health check of `service` ("" for the whole server) at `target`.
    Grpc {
        /// Where to send the check.
        target: Target,
        /// The health service name.
        service: String,
    },
    /// `GET url`, expecting 2xx.
    Http {
        /// `http://host:port/path`.
        url: url::Url,
    },
}

/// The command line is not a probe anyone can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}\nusage: <binary> probe grpc TARGET [SERVICE] | <binary> probe http http://HOST:PORT/PATH")]
pub struct UsageError(String);

impl Probe {
    /// Parses the arguments after the binary's name: `None` when there are none (the binary
    /// serves), a probe, or why the arguments are refused.
    pub fn from_args(args: &[String]) -> Result<Option<Self>, UsageError> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match args.as_slice() {
            [] => Ok(None),
            ["probe", "grpc", target] | ["probe", "grpc", target, ""] => Ok(Some(Self::grpc(target, "")?)),
            ["probe", "grpc", target, service] => Ok(Some(Self::grpc(target, service)?)),
            ["probe", "http", url] => {
                let url = url::Url::parse(url).map_err(|error| UsageError(format!("{url:?}: {error}")))?;
                if url.scheme() != "http" || url.host_str().is_none() {
                    return Err(UsageError(format!("{url}: only http://host:port/path is probed")));
                }
                Ok(Some(Self::Http { url }))
            }
            _ => Err(UsageError(format!("unexpected arguments {args:?}"))),
        }
    }

    fn grpc(target: &str, service: &str) -> Result<Self, UsageError> {
        let target = Target::parse(target).map_err(|error| UsageError(error.to_string()))?;
        Ok(Self::Grpc {
            target,
            service: service.to_owned(),
        })
    }

    /// Runs the probe: `Ok` when it passed, else why not.
    pub async fn run(&self) -> Result<(), String> {
        tokio::time::timeout(PROBE_TIMEOUT, async {
            match self {
                Self::Grpc { target, service } => grpc_health(target, service).await,
                Self::Http { url } => http_get(url).await,
            }
        })
        .await
        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
    }
}

async fn grpc_health(target: &Target, service: &str) -> Result<(), String> {
    let channel = connect(target, &ClientOptions::default())
        .await
        .map_err(|error| error.to_string())?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| format!("{target}: {:?} {}", status.code(), status.message()))?;
    let status = response.into_inner().status();
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!("{target}: {}", status.as_str_name()))
    }
}

/// A plain HTTP/1.1 GET, reading only the status line: enough for a readiness endpoint.
async fn http_get(url: &url::Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 1024 {
        if stream
            .read(&mut byte)
            .await
            .map_err(|error| format!("{url}: {error}"))?
            == 0
        {
            break;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.split_whitespace().nth(1).and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(_) => Err(format!("{url}: {}", line.trim())),
        None => Err(format!("{url}: not an HTTP answer: {:?}", line.trim())),
    }
}

/// For a binary's `main`: `None` when it was started without arguments (it serves), else the
/// exit code of the probe the arguments ask for (or of the usage error).
pub fn main_from_args(binary: &str) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let probe = match Probe::from_args(&args) {
        Ok(None) => return None,
        Ok(Some(probe)) => probe,
        Err(error) => {
            eprintln!("{binary}: {error}");
            return Some(ExitCode::from(u8::try_from(EXIT_BAD_CONFIG).unwrap_or(2)));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{binary}: cannot start the async runtime: {error}");
            return Some(ExitCode::FAILURE);
        }
    };
    Some(match runtime.block_on(probe.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{binary}: probe failed: {reason}");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').filter(|a| !a.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn no_arguments_means_serve() {
        assert_eq!(Probe::from_args(&[]), Ok(None));
    }

    #[test]
    fn probes_parse() {
        assert_eq!(
            Probe::from_args(&args("probe grpc dns:///user.shop.svc.cluster.local.:50051 liveness")),
            Ok(Some(Probe::Grpc {
                target: Target::Dns {
                    host: "user.shop.svc.cluster.local.".into(),
                    port: 50051
                },
                service: "liveness".into()
            }))
        );
        assert!(matches!(
            Probe::from_args(&args("probe grpc 127.0.0.1:50051")),
            Ok(Some(Probe::Grpc { service, .. })) if service.is_empty()
        ));
        assert!(matches!(
            Probe::from_args(&args("probe http http://gateway:80/readyz")),
            Ok(Some(Probe::Http { url })) if url.path() == "/readyz"
        ));
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_usage() {
        for line in [
            "serve",
            "probe",
            "probe grpc",
            "probe grpc ftp://x:1",
            "probe http https://gateway/readyz",
            "probe http not-a-url",
            "probe tcp x:1",
            "probe grpc a:1 b c",
        ] {
            let error = Probe::from_args(&args(line)).expect_err(line);
            assert!(error.to_string().contains("usage:"), "{line}: {error}");
        }
    }

    #[tokio::test]
    async fn http_probe_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Service Unavailable\r\n\r\n"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0_u8; 1024];
                let read = socket.read(&mut request).await.unwrap();
                assert!(String::from_utf8_lossy(&request[..read]).starts_with("GET /readyz?x=1 HTTP/1.1\r\n"));
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let probe = Probe::Http {
            url: url::Url::parse(&format!("http://{addr}/readyz?x=1")).unwrap(),
        };
        assert_eq!(probe.run().await, Ok(()));
        let failed = probe.run().await.expect_err("503 fails");
        assert!(failed.contains("503"), "{failed}");
        server.await.unwrap();
        let refused = probe.run().await.expect_err("nothing listens");
        assert!(refused.contains(&addr.to_string()), "{refused}");
    }
}
