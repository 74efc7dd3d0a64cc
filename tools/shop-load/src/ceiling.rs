//! The ceilings a run is compared with, measured in the same run on the same machine: for the
//! flash sale, PostgreSQL's own rate for the one-row conditional update (pgbench, on the run's
//! database); for reads, nginx serving the same JSON body from a file, loaded by the same
//! generator with the same connections.

use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::stats::Summary;

/// A ceiling and the run's ratios to it.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// What was measured: `pgbench` or `nginx`.
    pub kind: &'static str,
    /// Its throughput (`unit`), or none when it could not be measured.
    pub throughput: Option<f64>,
    /// The unit of `throughput`.
    pub unit: &'static str,
    /// Per figure of the run, the run's value divided by the ceiling's.
    pub ratios: BTreeMap<String, f64>,
    /// Why it was not measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The ceiling's own load figures (nginx), like the run's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Summary>,
}

impl Ceiling {
    /// Not measured, because of `reason`.
    pub fn skipped(kind: &'static str, reason: &anyhow::Error) -> Self {
        Self {
            kind,
            throughput: None,
            unit: "",
            ratios: BTreeMap::new(),
            skipped: Some(format!("{reason:#}")),
            operations: Vec::new(),
        }
    }

    /// nginx's figures for `operation` next to the shop's.
    pub fn of_nginx(shop: &[Summary], nginx: &[Summary], operation: &str) -> Self {
        let throughput = |summaries: &[Summary]| {
            summaries
                .iter()
                .find(|summary| summary.operation == operation)
                .map_or(0.0, |summary| summary.throughput)
        };
        let ceiling = throughput(nginx);
        Self {
            kind: "nginx",
            throughput: Some(ceiling),
            unit: "requests/s",
            ratios: ratio(operation, throughput(shop), ceiling).into_iter().collect(),
            skipped: None,
            operations: nginx.to_vec(),
        }
    }

    /// pgbench's `tps` next to the run's `figures` (name, per second).
    pub fn of_pgbench(tps: f64, figures: &[(&str, f64)]) -> Self {
        Self {
            kind: "pgbench",
            throughput: Some(tps),
            unit: "updates/s",
            ratios: figures
                .iter()
                .filter_map(|(name, value)| ratio(name, *value, tps))
                .collect(),
            skipped: None,
            operations: Vec::new(),
        }
    }
}

fn ratio(name: &str, value: f64, ceiling: f64) -> Option<(String, f64)> {
    (ceiling > 0.0).then(|| (name.to_owned(), value / ceiling))
}

/// nginx serving one file on a free loopback port, with a configuration, root and logs of its
/// own in a temporary directory (no root needed; as root its workers run as `nobody`). Stopped
/// when dropped.
#[derive(Debug)]
pub struct Nginx {
    dir: tempfile::TempDir,
    binary: PathBuf,
    port: u16,
    child: Child,
}

impl Nginx {
    /// Serves `body` at `path` (its query ignored) as `application/json`.
    pub async fn start(path: &str, body: &[u8]) -> anyhow::Result<Self> {
        let binary = find_nginx()?;
        let dir = tempfile::tempdir()?;
        let file = dir
            .path()
            .join("root")
            .join(path.split('?').next().unwrap_or(path).trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().context("a file's directory")?)?;
        std::fs::write(&file, body)?;
        readable_by_all(dir.path())?;
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        let conf = dir.path().join("nginx.conf");
        let as_root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
        std::fs::write(&conf, config(dir.path(), port, as_root))?;
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut nginx = Self {
            dir,
            binary,
            port,
            child,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let exited = nginx.child.try_wait()?.is_some();
            if exited || tokio::time::Instant::now() >= deadline {
                let log = std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
                bail!("nginx did not start: {}", log.trim());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(nginx)
    }

    /// Where it serves, `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `-s stop` makes the master stop its workers; a SIGKILL would orphan them.
        let stopped = std::process::Command::new(&self.binary)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .args(["-s", "stop"])
            .stderr(std::process::Stdio::null())
            .status();
        if !stopped.is_ok_and(|status| status.success()) {
            let _ = self.child.start_kill();
        }
    }
}

/// The nginx binary: on `PATH`, or Debian's `/usr/sbin/nginx`.
fn find_nginx() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .context("nginx is not installed (not on PATH nor in /usr/sbin; Debian: apt-get install nginx-light)")
}

/// nginx's configuration: `worker_processes auto` (one per core, as it would be deployed), no
/// access log, long keep-alive, the file answered from `root`.
fn config(dir: &std::path::Path, port: u16, as_root: bool) -> String {
    let dir = dir.display();
    let user = if as_root { "user nobody nogroup;\n" } else { "" };
    format!(
        "worker_processes auto;\n{user}pid {dir}/nginx.pid;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 75s;\n  \
         client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  \
         uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  open_file_cache max=16;\n  \
         server {{\n    listen 127.0.0.1:{port};\n    root {dir}/root;\n    default_type application/json;\n    \
         location / {{ try_files $uri =404; }}\n  }}\n}}\n"
    )
}

/// Makes the tree under `dir` readable (and its directories searchable) by every user, for
/// workers that run as `nobody`.
fn readable_by_all(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if dir.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            readable_by_all(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ratios_divide_the_run_by_the_ceiling() {
        let ceiling = Ceiling::of_pgbench(4_000.0, &[("settled/s", 12_000.0), ("admitted/s", 2_000.0)]);
        assert_eq!(ceiling.ratios["settled/s"], 3.0);
        assert_eq!(ceiling.ratios["admitted/s"], 0.5);
        // No ceiling measured, no ratio made up.
        assert!(Ceiling::of_pgbench(0.0, &[("settled/s", 1.0)]).ratios.is_empty());
    }

    #[test]
    fn the_configuration_serves_the_root_on_loopback_only() {
        let conf = config(std::path::Path::new("/tmp/x"), 41_000, false);
        assert!(conf.contains("listen 127.0.0.1:41000;"));
        assert!(conf.contains("root /tmp/x/root;"));
        assert!(!conf.contains("user "));
        assert!(config(std::path::Path::new("/tmp/x"), 1, true).contains("user nobody nogroup;"));
    }
}
