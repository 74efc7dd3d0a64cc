//! The `shop` binary as tests start it: a clean environment, a fresh data directory, every
//! listener on a free loopback port, its stdout piped (it prints where everything listens).

use std::process::Stdio;

/// A command for the `shop` binary; add variables, then spawn.
pub fn shop_command(data_dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SHOP_DATA_DIR", data_dir)
        .env("SHOP_HTTP_ADDR", "127.0.0.1:0")
        .env("SHOP_USER_GRPC_ADDR", "127.0.0.1:0")
        .env("SHOP_CATALOG_GRPC_ADDR", "127.0.0.1:0")
        .env("SHOP_ORDER_GRPC_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}
