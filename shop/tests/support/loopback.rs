//! The `shop` binary as tests start it: a clean environment, a fresh data directory, every
//! listener on a free loopback port, its stdout piped (it prints where everything listens).

use std::{net::SocketAddr, process::Stdio, time::Duration};

use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A command for the `shop` binary; add variables, then spawn.
pub fn shop_command(data_dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SHOP_DATA_DIR", data_dir)
        .env("SHOP_HTTP_ADDR", "127.0.0.1:0")
        .env("SHOP_METRICS_ADDR", "127.0.0.1:0")
        .env("SHOP_USER_GRPC_ADDR", "127.0.0.1:0")
        .env("SHOP_CATALOG_GRPC_ADDR", "127.0.0.1:0")
        .env("SHOP_ORDER_GRPC_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Spawns `command` (from [`shop_command`]) and waits until the gateway listens; returns the
/// process and the gateway's address. Stdout keeps being read, so the binary never blocks on a
/// full pipe.
#[allow(dead_code)] // Not every test binary that includes this module starts `shop` this way.
pub async fn spawn_shop(command: &mut tokio::process::Command) -> (tokio::process::Child, SocketAddr) {
    let mut shop = command.spawn().expect("the shop binary starts");
    let stdout = shop.stdout.take().expect("shop_command pipes stdout");
    let mut lines = BufReader::new(stdout).lines();
    let http = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("reading shop's output")
                .expect("shop exited before listening");
            if let Some(rest) = line
                .split("REST gateway")
                .nth(1)
                .and_then(|rest| rest.split("http://").nth(1))
            {
                return rest
                    .split('/')
                    .next()
                    .and_then(|addr| addr.parse().ok())
                    .expect("shop prints its REST address");
            }
        }
    })
    .await
    .expect("shop did not report its REST address");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (shop, http)
}
