//! The REST gateway as its own process, configured by the environment (see `GatewayConfig`;
//! `REDIS_URL` for the rate-limit counters shared by every replica, under `SHOP_CACHE_PREFIX`
//! [shop:] like every other cache key). `shop-gateway probe http URL` (or `probe grpc TARGET`)
//! runs one health check instead (see `shop_platform::probe`).

use shop_platform::config::{ProcessEnv, exit_on_bad_config};

fn main() -> anyhow::Result<std::process::ExitCode> {
    if let Some(code) = shop_platform::probe::main_from_args("shop-gateway") {
        return Ok(code);
    }
    tokio::runtime::Runtime::new()?.block_on(serve())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve() -> anyhow::Result<()> {
    let env = ProcessEnv;
    let (config, telemetry, cache) = exit_on_bad_config((|| {
        let config = shop_gateway::GatewayConfig::from_env(&env, "0.0.0.0:8080")?;
        let telemetry = shop_platform::telemetry::TelemetryConfig::from_env(&env, "shop-gateway")?;
        let cache = shop_platform::service::CacheUrl::from_env(&env)?;
        Ok((config, telemetry, cache))
    })());
    let _telemetry = shop_platform::telemetry::init(&telemetry)?;
    let cache = cache.open("gateway:").await?;
    let gateway = shop_gateway::Gateway::build(&config, cache).await?;
    tracing::info!(http = %gateway.local_addr()?, "gateway listening");
    gateway.run(shop_platform::shutdown::on_signal()).await
}
