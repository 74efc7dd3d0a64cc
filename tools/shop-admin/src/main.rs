//! `shop-admin`: operator commands against a deployment (see `shop-admin --help`). Results go
//! to standard output, one log line per action to standard error. Exit codes: 0 done, 1 failed,
//! 64 a bad command line or configuration.

use std::process::ExitCode;

use shop_admin::{cli, config::AdminConfig};
use shop_platform::config::{EXIT_BAD_CONFIG, ProcessEnv};

#[tokio::main]
async fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("shop-admin: {error}\n\n{}", cli::USAGE);
            return bad_usage();
        }
    };
    let config = match AdminConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("shop-admin: {error}");
            return bad_usage();
        }
    };
    let _telemetry = match shop_platform::telemetry::init(&config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("shop-admin: {error:#}");
            return bad_usage();
        }
    };
    match shop_admin::run(command, &config).await {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            // A missing AMQP_URL or DATABASE_URL is a configuration mistake, not a failure.
            let is_config = error.downcast_ref::<shop_platform::config::ConfigError>().is_some();
            eprintln!("shop-admin: {error:#}");
            if is_config { bad_usage() } else { ExitCode::FAILURE }
        }
    }
}

fn bad_usage() -> ExitCode {
    ExitCode::from(u8::try_from(EXIT_BAD_CONFIG).unwrap_or(1))
}
