//! The command line: `shop-load SCENARIO [options]`, parsed by hand (every option is a flag or
//! `--name VALUE`), and the help that explains each option.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use shop_platform::config::parse_duration;

/// `shop-load --help`.
pub const HELP: &str = "\
shop-load: load through the shop's public REST edge (/api/v1), measured per operation.

usage: shop-load <browse|flash-sale|read|listing> (--url URL | --spawn one-process|services) [options]

Scenarios:
  browse        virtual users, each signed up for real (code by mail, confirm, sign-up,
                sign-in), doing Online Boutique's mix: list products 10, view a product 10,
                add to cart 2, view the cart 3, check out (POST /orders from the cart) 1
  flash-sale    --orders single-unit orders for one product with --units in stock, from
                --buyers accounts made before the timed part; then waits until every order is
                paid or rejected and checks: nothing oversold, paid = min(orders, units)
  read          GET /api/v1/products/{id} of one product (--list: GET /api/v1/products?limit=20)
  listing       the product list as the catalog grows to each of --sizes products (written
                straight into the shop's database): pages walked by cursor, word searches and
                price bands, none of them kept by the edge (spawned without its cache); p99
                per size, and the largest size's p99 over the smallest's

Target (exactly one):
  --url URL             a running shop's REST edge, e.g. http://127.0.0.1:8080; products are
                        created as the admin of --admin-email/--admin-password
  --spawn KIND          start the shop on the test servers (SHOP_TEST_DATABASE_URL,
                        SHOP_TEST_REDIS_URL, SHOP_TEST_AMQP_URL, loopback defaults) with a fresh
                        database, queue names and cache prefix, removed at the end. KIND:
                        one-process (the `shop` binary) or services (the four service
                        binaries); the binaries are taken from shop-load's own directory
  --admin-email EMAIL   with --url: the admin account [$SHOP_ADMIN_EMAIL]
  --admin-password PW   with --url: its password [$SHOP_ADMIN_PASSWORD]
  --smtp-listen ADDR    with --url, browse and flash-sale (they sign accounts up): receive
                        the shop's mail here (the shop's SMTP_URL must point at it, and its
                        rate limits must allow the load), e.g. 127.0.0.1:2525
  --database-url URL    with --url, flash-sale --ceilings: the shop's PostgreSQL database, for
                        pgbench; listing: where its products are written

Load:
  --connections N       connections (closed loop: each sends its next request when answered;
                        open loop: the most requests in flight) [64]
  --rate R              open loop: start R steps a second, each timed from when it was due
                        (no coordinated omission) [closed loop]
  --duration D          browse, read: how long, e.g. 500ms, 20s, 2m; listing: per size [20s]
  --users N             browse: virtual users signed up before the run [--connections]
  --products N          browse: products on sale [10]
  --orders N            flash-sale: orders placed [8000]
  --units S             flash-sale: the product's stock [2000]
  --buyers N            flash-sale: accounts the orders are spread over [200]
  --list                read: the product list instead of one product
  --sizes N,N,...       listing: catalog sizes, in products [1000,1000000]

Output:
  --json [PATH]         the figures as JSON into PATH, or standard output without PATH or
                        with - (the table then goes to standard error)
  --plot PATH           the latency distribution of each operation as an SVG chart
  --ceilings            measure the ceiling in the same run and print shop/ceiling:
                        flash-sale: pgbench's one-row conditional update on the same database;
                        read: nginx serving the same JSON body, loaded the same way
  --pgbench-clients N   pgbench clients [16]
  --pgbench-seconds N   pgbench's duration [10]
  -h, --help            this help

Exit status: 0 done; 1 an invariant failed (flash-sale); 2 the run could not be done;
64 bad arguments.";

/// The scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Online Boutique's mix with real sign-ups.
    Browse,
    /// Many single-unit orders for one product.
    FlashSale,
    /// One read again and again.
    Read,
    /// The product list at growing catalog sizes.
    Listing,
}

impl Scenario {
    /// Its name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Browse => "browse",
            Self::FlashSale => "flash-sale",
            Self::Read => "read",
            Self::Listing => "listing",
        }
    }
}

/// What `--spawn` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawn {
    /// The `shop` binary.
    OneProcess,
    /// The four service binaries.
    Services,
}

impl Spawn {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::OneProcess => "one-process",
            Self::Services => "services",
        }
    }
}

/// The shop under load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A running shop.
    Url(String),
    /// One started by shop-load.
    Spawn(Spawn),
}

/// Where the JSON goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonOut {
    /// Standard output.
    Stdout,
    /// A file.
    File(PathBuf),
}

/// Every option, with its default.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The scenario.
    pub scenario: Scenario,
    /// The shop.
    pub target: Target,
    /// `--admin-email`.
    pub admin_email: Option<String>,
    /// `--admin-password`.
    pub admin_password: Option<String>,
    /// `--smtp-listen`.
    pub smtp_listen: Option<SocketAddr>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--connections`.
    pub connections: usize,
    /// `--rate`.
    pub rate: Option<f64>,
    /// `--duration`.
    pub duration: Duration,
    /// `--users`.
    pub users: Option<usize>,
    /// `--products`.
    pub products: usize,
    /// `--orders`.
    pub orders: u64,
    /// `--units`.
    pub units: u64,
    /// `--buyers`.
    pub buyers: usize,
    /// `--list`.
    pub list: bool,
    /// `--sizes`, increasing.
    pub sizes: Vec<u64>,
    /// `--json`.
    pub json: Option<JsonOut>,
    /// `--plot`.
    pub plot: Option<PathBuf>,
    /// `--ceilings`.
    pub ceilings: bool,
    /// `--pgbench-clients`.
    pub pgbench_clients: usize,
    /// `--pgbench-seconds`.
    pub pgbench_seconds: u64,
}

/// The command line's meaning: run with these options, or print the help.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run.
    Run(Box<Options>),
    /// `--help`.
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Command> {
    let mut args = args.into_iter().peekable();
    let mut scenario = None;
    let mut url = None;
    let mut spawn = None;
    let mut options = Options {
        scenario: Scenario::Read,
        target: Target::Spawn(Spawn::OneProcess),
        admin_email: None,
        admin_password: None,
        smtp_listen: None,
        database_url: None,
        connections: 64,
        rate: None,
        duration: Duration::from_secs(20),
        users: None,
        products: 10,
        orders: 8_000,
        units: 2_000,
        buyers: 200,
        list: false,
        sizes: vec![1_000, 1_000_000],
        json: None,
        plot: None,
        ceilings: false,
        pgbench_clients: 16,
        pgbench_seconds: 10,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "browse" | "flash-sale" | "read" | "listing" if scenario.is_none() => {
                scenario = Some(match name.as_str() {
                    "browse" => Scenario::Browse,
                    "flash-sale" => Scenario::FlashSale,
                    "listing" => Scenario::Listing,
                    _ => Scenario::Read,
                });
            }
            "--url" => url = Some(value()?),
            "--spawn" => {
                spawn = Some(match value()?.as_str() {
                    "one-process" => Spawn::OneProcess,
                    "services" => Spawn::Services,
                    other => bail!("--spawn takes one-process or services, not {other:?}"),
                });
            }
            "--admin-email" => options.admin_email = Some(value()?),
            "--admin-password" => options.admin_password = Some(value()?),
            "--smtp-listen" => options.smtp_listen = Some(number(&name, &value()?)?),
            "--database-url" => options.database_url = Some(value()?),
            "--connections" => options.connections = positive(&name, &value()?)?,
            "--rate" => {
                let rate: f64 = number(&name, &value()?)?;
                if !(rate.is_finite() && rate > 0.0) {
                    bail!("--rate must be a positive number of requests a second");
                }
                options.rate = Some(rate);
            }
            "--duration" => {
                options.duration = parse_duration(&value()?).map_err(|error| anyhow::anyhow!("--duration: {error}"))?;
                if options.duration.is_zero() {
                    bail!("--duration must be longer than 0");
                }
            }
            "--users" => options.users = Some(positive(&name, &value()?)?),
            "--products" => options.products = positive(&name, &value()?)?,
            "--orders" => options.orders = positive(&name, &value()?)?,
            "--units" => options.units = number(&name, &value()?)?,
            "--buyers" => options.buyers = positive(&name, &value()?)?,
            "--list" => options.list = true,
            "--sizes" => options.sizes = sizes(&value()?)?,
            "--json" => {
                // The path is optional: taken unless the next word is another option.
                let path = inline.clone().or_else(|| args.next_if(|next| !next.starts_with("--")));
                options.json = Some(match path.as_deref() {
                    None | Some("-") => JsonOut::Stdout,
                    Some(path) => JsonOut::File(path.into()),
                });
            }
            "--plot" => options.plot = Some(value()?.into()),
            "--ceilings" => options.ceilings = true,
            "--pgbench-clients" => options.pgbench_clients = positive(&name, &value()?)?,
            "--pgbench-seconds" => options.pgbench_seconds = positive(&name, &value()?)?,
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    options.scenario = scenario.context("name a scenario: browse, flash-sale, read or listing (see --help)")?;
    options.target = match (url, spawn) {
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--url takes http://host:port, not {url:?}");
            }
            Target::Url(url.trim_end_matches('/').trim_end_matches("/api/v1").to_owned())
        }
        (None, Some(spawn)) => Target::Spawn(spawn),
        _ => bail!("give exactly one of --url and --spawn (see --help)"),
    };
    Ok(Command::Run(Box::new(options)))
}

/// `--sizes`: catalog sizes, each at least 1 and at most ten million, in increasing order.
fn sizes(raw: &str) -> anyhow::Result<Vec<u64>> {
    let sizes = raw
        .split(',')
        .map(|size| positive::<u64>("--sizes", size.trim().replace('_', "").as_str()))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    if sizes.iter().any(|&size| size > 10_000_000) {
        bail!("--sizes: at most 10000000 products");
    }
    if !sizes.is_sorted_by(|a, b| a < b) {
        bail!("--sizes must increase, e.g. 1000,1000000");
    }
    Ok(sizes)
}

fn number<T: std::str::FromStr>(name: &str, raw: &str) -> anyhow::Result<T> {
    raw.parse().map_err(|_| anyhow::anyhow!("{name}: {raw:?} is not valid"))
}

fn positive<T: std::str::FromStr + Default + PartialEq>(name: &str, raw: &str) -> anyhow::Result<T> {
    let value: T = number(name, raw)?;
    if value == T::default() {
        bail!("{name} must be at least 1");
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(line: &str) -> anyhow::Result<Options> {
        match parse(line.split_whitespace().map(str::to_owned))? {
            Command::Run(options) => Ok(*options),
            Command::Help => bail!("help"),
        }
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let options = run("read --spawn one-process").unwrap();
        assert_eq!(options.scenario, Scenario::Read);
        assert_eq!(options.target, Target::Spawn(Spawn::OneProcess));
        assert_eq!(options.connections, 64);
        assert_eq!(options.duration, Duration::from_secs(20));
        assert_eq!((options.orders, options.units, options.buyers), (8_000, 2_000, 200));
        assert_eq!(options.rate, None);
        assert_eq!(options.json, None);
        assert!(!options.ceilings && !options.list);
    }

    #[test]
    fn every_option_is_read() {
        let options = run(
            "--url http://127.0.0.1:8080/api/v1 flash-sale --orders 200 --units=50 --buyers 20 --connections 8 \
             --rate 500 --duration 2s --json out.json --plot lat.svg --ceilings --pgbench-clients 4 \
             --pgbench-seconds 3 --admin-email a@b.c --admin-password pw --smtp-listen 127.0.0.1:2525 \
             --database-url postgres://x/y --users 5 --products 3 --list --sizes 10,1_000",
        )
        .unwrap();
        assert_eq!(options.scenario, Scenario::FlashSale);
        assert_eq!(options.target, Target::Url("http://127.0.0.1:8080".into()));
        assert_eq!((options.orders, options.units, options.buyers), (200, 50, 20));
        assert_eq!(options.connections, 8);
        assert_eq!(options.rate, Some(500.0));
        assert_eq!(options.duration, Duration::from_secs(2));
        assert_eq!(options.json, Some(JsonOut::File("out.json".into())));
        assert_eq!(options.plot, Some("lat.svg".into()));
        assert!(options.ceilings && options.list);
        assert_eq!((options.pgbench_clients, options.pgbench_seconds), (4, 3));
        assert_eq!(options.admin_email.as_deref(), Some("a@b.c"));
        assert_eq!(options.smtp_listen, Some("127.0.0.1:2525".parse().unwrap()));
        assert_eq!((options.users, options.products), (Some(5), 3));
        assert_eq!(options.sizes, [10, 1_000]);
        assert_eq!(run("listing --spawn services").unwrap().sizes, [1_000, 1_000_000]);
    }

    #[test]
    fn json_without_a_path_goes_to_standard_output() {
        assert_eq!(run("read --spawn services --json").unwrap().json, Some(JsonOut::Stdout));
        let options = run("read --json --spawn services").unwrap();
        assert_eq!(options.json, Some(JsonOut::Stdout));
        assert_eq!(options.target, Target::Spawn(Spawn::Services));
        assert_eq!(
            run("read --spawn services --json -").unwrap().json,
            Some(JsonOut::Stdout)
        );
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        for (line, reason) in [
            ("read", "exactly one of --url and --spawn"),
            ("read --url http://a:1 --spawn services", "exactly one"),
            ("--spawn services", "name a scenario"),
            ("read --spawn pods", "one-process or services"),
            ("read --spawn services --connections 0", "at least 1"),
            ("read --spawn services --rate -3", "positive"),
            ("read --spawn services --duration 5", "no unit"),
            ("read --spawn services --orders", "needs a value"),
            ("read --spawn services --bogus", "unknown argument"),
            ("read --url 127.0.0.1:8080", "http://host:port"),
            ("listing --spawn services --sizes 1000,100", "must increase"),
            ("listing --spawn services --sizes 1000,1000", "must increase"),
            ("listing --spawn services --sizes 0,10", "at least 1"),
            ("listing --spawn services --sizes 10,x", "not valid"),
            ("listing --spawn services --sizes 20000000", "at most"),
        ] {
            let error = run(line).unwrap_err().to_string();
            assert!(error.contains(reason), "{line}: {error}");
        }
    }

    #[test]
    fn help_is_asked_for_and_names_every_option() {
        assert_eq!(parse(["read".to_owned(), "-h".to_owned()]).unwrap(), Command::Help);
        for option in [
            "--url",
            "--spawn",
            "--admin-email",
            "--admin-password",
            "--smtp-listen",
            "--database-url",
            "--connections",
            "--rate",
            "--duration",
            "--users",
            "--products",
            "--orders",
            "--units",
            "--buyers",
            "--list",
            "--sizes",
            "--json",
            "--plot",
            "--ceilings",
            "--pgbench-clients",
            "--pgbench-seconds",
        ] {
            assert!(HELP.contains(option), "{option}");
        }
    }
}
