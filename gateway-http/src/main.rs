//! The REST gateway as its own process, configured by the environment (see `GatewayConfig`).

use shop_platform::config::{ProcessEnv, exit_on_bad_config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = ProcessEnv;
    let (config, telemetry) = exit_on_bad_config((|| {
        let config = shop_gateway::GatewayConfig::from_env(&env, "0.0.0.0:8080")?;
        let telemetry = shop_platform::telemetry::TelemetryConfig::from_env(&env, "gateway")?;
        Ok((config, telemetry))
    })());
    let _telemetry = shop_platform::telemetry::init(&telemetry)?;
    let gateway = shop_gateway::Gateway::build(&config).await?;
    tracing::info!(http = %gateway.local_addr()?, "gateway listening");
    gateway.run(shop_platform::shutdown::on_signal()).await
}
