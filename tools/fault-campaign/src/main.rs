//! `fault-campaign [--full | --short | --calm] [--bin-dir DIR]`: runs a fault campaign against
//! the servers of `SHOP_TEST_DATABASE_URL`, `SHOP_TEST_AMQP_URL` and `SHOP_TEST_REDIS_URL`
//! (loopback defaults), prints the report and exits 1 when a check fails (2 when the campaign
//! could not run). Without `--bin-dir` it builds the service binaries first, in its own cargo
//! profile.

use std::{path::PathBuf, process::ExitCode};

use fault_campaign::{Binaries, Profile};

const USAGE: &str = "usage: fault-campaign [--full | --short | --calm] [--bin-dir DIR]";

fn main() -> ExitCode {
    let mut profile = Profile::full();
    let mut bin_dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--full" | "--short" | "--calm" => {
                profile = Profile::named(&arg[2..]).unwrap_or_else(Profile::full);
            }
            "--bin-dir" => match args.next() {
                Some(dir) => bin_dir = Some(dir.into()),
                None => return usage(),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let binaries = match bin_dir {
        Some(dir) => Binaries::in_dir(&dir),
        None => Binaries::build(),
    };
    let binaries = match binaries {
        Ok(binaries) => binaries,
        Err(error) => {
            eprintln!("fault-campaign: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fault-campaign: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            report = fault_campaign::run(profile, &binaries) => Some(report),
            // Ctrl-c: dropping the campaign kills every process it started and deletes its queues.
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match outcome {
        Some(Ok(report)) => {
            println!("{}", report.render());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(Err(error)) => {
            eprintln!("fault-campaign: the campaign could not run: {error:#}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("fault-campaign: interrupted");
            ExitCode::from(130)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(64)
}
