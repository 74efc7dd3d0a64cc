//! `shop-load SCENARIO (--url URL | --spawn KIND) [options]`; `--help` explains every option.

use std::process::ExitCode;

use shop_load::options::{self, Command, JsonOut};

fn main() -> ExitCode {
    let options = match options::parse(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{}", options::HELP);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("shop-load: {error:#}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shop-load: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            report = shop_load::run(&options) => Some(report),
            // Ctrl-c: dropping the run kills what it started.
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    let report = match outcome {
        Some(Ok(report)) => report,
        Some(Err(error)) => {
            eprintln!("shop-load: the run could not be done: {error:#}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("shop-load: interrupted");
            return ExitCode::from(130);
        }
    };
    if let Err(error) = write_outputs(&options, &report) {
        eprintln!("shop-load: {error:#}");
        return ExitCode::from(2);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The table (on standard error when the JSON takes standard output), the JSON, the chart.
fn write_outputs(options: &options::Options, report: &shop_load::report::Report) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let table = report.render();
    let json = serde_json::to_string_pretty(report)?;
    match &options.json {
        Some(JsonOut::Stdout) => {
            eprint!("{table}");
            println!("{json}");
        }
        Some(JsonOut::File(path)) => {
            print!("{table}");
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        }
        None => print!("{table}"),
    }
    if let Some(path) = &options.plot {
        let title = format!("shop-load {}: latency, {}", report.scenario, report.target);
        let svg = shop_load::svg::latency_cdf(&title, &report.operations);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
