//! The REST gateway as its own process, configured by the environment (see `GatewayConfig`;
//! `REDIS_URL` for the rate-limit counters shared by every replica, under `SHOP_CACHE_PREFIX`
//! [shop:] like every other cache key). `shop-gateway probe http URL` (or `probe grpc TARGET`)
//! runs one health check instead (see `shop_platform::probe`).

use shop_platform::config::{Env, ProcessEnv, exit_on_bad_config};

fn main() -> anyhow::Result<std::process::ExitCode> {
    if let Some(code) = shop_platform::probe::main_from_args("shop-gateway") {
        return Ok(code);
    }
    tokio::runtime::Runtime::new()?.block_on(serve())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve() -> anyhow::Result<()> {
    let env = ProcessEnv;
    let (config, telemetry, cache_url, cache_prefix) = exit_on_bad_config((|| {
        let config = shop_gateway::GatewayConfig::from_env(&env, "0.0.0.0:8080")?;
        let telemetry = shop_platform::telemetry::TelemetryConfig::from_env(&env, "shop-gateway")?;
        let cache_url = env.url_or("REDIS_URL", "memory://", &["redis", "rediss", "memory"])?;
        let cache_prefix = env.var("SHOP_CACHE_PREFIX").unwrap_or_else(|| "shop:".to_owned());
        Ok((config, telemetry, cache_url, cache_prefix))
    })());
    let _telemetry = shop_platform::telemetry::init(&telemetry)?;
    let cache = shop_platform::cache::from_url(&cache_url, &format!("{cache_prefix}gateway:")).await?;
    let gateway = shop_gateway::Gateway::build(&config, cache).await?;
    tracing::info!(http = %gateway.local_addr()?, "gateway listening");
    gateway.run(shop_platform::shutdown::on_signal()).await
}
