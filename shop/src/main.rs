//! `shop`: every service and the REST gateway in one process, on embedded defaults. Prints
//! where everything listens; ctrl-c (or SIGTERM) drains and stops it.

use shop::{Mesh, ShopConfig};
use shop_platform::config::{ProcessEnv, exit_on_bad_config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = exit_on_bad_config(ShopConfig::from_env(&ProcessEnv));
    let telemetry = shop_platform::telemetry::init(&config.telemetry)?;
    let mesh = Mesh::build(&config).await?;
    let at = mesh.addresses();
    println!("shop is running (ctrl-c stops it)");
    println!(
        "  REST gateway    http://{}/api/v1  (health: /healthz, /readyz)",
        at.http
    );
    println!("  user service    grpc://{}", at.user);
    println!("  catalog service grpc://{}", at.catalog);
    println!("  order service   grpc://{}", at.order);
    if let Some(addr) = telemetry.metrics_addr() {
        println!("  metrics         http://{addr}/metrics");
    }
    println!("  data            {}", config.data_dir.display());
    mesh.run(shop_platform::shutdown::on_signal()).await
}
