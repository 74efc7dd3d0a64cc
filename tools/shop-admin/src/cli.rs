//! The command line: which command, with which arguments. Parsed by hand (a handful of
//! commands and flags), with one usage text for `--help` and for every mistake.

use std::time::Duration;

use shop_platform::{config::parse_duration, queue::Selection};

/// What `shop-admin --help` prints.
pub const USAGE: &str = "\
usage: shop-admin <command>

  dlq list                                  dead-letter queues of the stock queues, with counts
  dlq show <queue> [--limit N]              the first N (10) dead letters of <queue>, decoded;
                                            left in the queue (their order may change)
  dlq redrive <queue> (--id ID | --all)     move dead letters back to <queue>
  orders stranded [--older-than AGE]        orders still pending after AGE (5m)
  orders repair (--id ORDER | --all [--older-than AGE]) [--reject]
                                            ask the catalog again now for stranded orders
                                            (all pending after AGE with --all), or with
                                            --reject give them up: rejected, stock released
  mesh keygen <name>                        a mesh key for caller <name>: its SHOP_MESH_KEY and
                                            the SHOP_MESH_TRUST entry the services need
  mesh secret [--secret-name NAME]          a Kubernetes Secret (shop-mesh) with fresh keys for
                                            the gateway and the services, and their trust set
  mesh token <service> <method> --as NAME [--user ID --role ROLE] [--ttl AGE]
                                            a mesh token signed with SHOP_MESH_KEY for calling
                                            <method> (shop.order.v1.OrderService/ListOrders) of
                                            <service> (user, catalog, order), e.g. with grpcurl
                                            -H 'x-shop-mesh-token: $(shop-admin mesh token …)'

<queue> is a work queue (stock.reserve) or its dead-letter queue (stock.reserve.dead).
AGE is a whole number and a unit: 30s, 5m, 2h, 1d.
Environment: AMQP_URL (dlq), DATABASE_URL (orders), SHOP_MESH_KEY (mesh token),
SHOP_CATALOG_RESERVE_QUEUE,
SHOP_CATALOG_RELEASE_QUEUE, SHOP_CATALOG_RESULTS_QUEUE, SHOP_ORDER_PLACED_QUEUE, RUST_LOG,
SHOP_LOG_FORMAT.
";

/// How many dead letters `dlq show` prints without `--limit`.
pub const DEFAULT_SHOW_LIMIT: usize = 10;
/// How old a pending order must be for `orders stranded` without `--older-than`.
pub const DEFAULT_STRANDED_AGE: Duration = Duration::from_secs(5 * 60);

/// A command of the tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `--help`.
    Help,
    /// `dlq …`.
    Dlq(DlqCommand),
    /// `orders …`.
    Orders(OrdersCommand),
    /// `mesh …`.
    Mesh(MeshCommand),
}

/// The mesh identity commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshCommand {
    /// A fresh key for caller `name`.
    Keygen {
        /// The caller's name (`reports`).
        name: String,
    },
    /// A Kubernetes Secret with fresh keys for the standard members.
    Secret {
        /// The Secret's name.
        secret_name: String,
    },
    /// A token signed with `SHOP_MESH_KEY`.
    Token {
        /// The service called.
        audience: String,
        /// The method called.
        method: String,
        /// The caller's name.
        caller: String,
        /// The end user, and the role asserted for them.
        user: Option<(uuid::Uuid, shop_platform::grpc::identity::Role)>,
        /// How long it lives.
        ttl: Duration,
    },
}

/// The Secret name `mesh secret` writes without `--secret-name` (the chart's default).
pub const DEFAULT_MESH_SECRET: &str = "shop-mesh";

/// The dead-letter queue commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DlqCommand {
    /// Every stock queue's dead-letter queue with its message count.
    List,
    /// The first `limit` dead letters of `queue`, decoded, left in place.
    Show {
        /// The work queue whose dead letters to show.
        queue: String,
        /// How many.
        limit: usize,
    },
    /// Moves dead letters of `queue` back to it.
    Redrive {
        /// The work queue whose dead letters to move back.
        queue: String,
        /// Which.
        selection: Selection,
    },
}

/// The order commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrdersCommand {
    /// Orders still pending after `older_than`.
    Stranded {
        /// How long an order must have been pending.
        older_than: Duration,
    },
    /// Acts now on stranded orders, as the order service's reconciler would in time.
    Repair {
        /// Which orders.
        which: Stranded,
        /// Ask again, or give up.
        action: Repair,
    },
}

/// Which stranded orders a repair is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stranded {
    /// This one.
    Id(uuid::Uuid),
    /// Every order still pending after this long.
    OlderThan(Duration),
}

pub use shop_order::reconcile::Repair;

/// A command line that does not parse; printed with [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Flags that take a value (`--limit 3` or `--limit=3`).
const VALUE_FLAGS: [&str; 7] = ["--limit", "--id", "--older-than", "--as", "--user", "--role", "--ttl"];
/// Flags that stand alone.
const SWITCHES: [&str; 2] = ["--all", "--reject"];
/// `--secret-name`, which only `mesh secret` takes.
const SECRET_NAME: &str = "--secret-name";

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let args: Vec<String> = args.into_iter().collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") || args.first().is_some_and(|arg| arg == "help") {
        return Ok(Command::Help);
    }
    let mut line = Line::split(args)?;
    let command = match (line.positional(), line.positional()) {
        (Some(group), Some(action)) => match (group.as_str(), action.as_str()) {
            ("dlq", "list") => Command::Dlq(DlqCommand::List),
            ("dlq", "show") => {
                let queue = line.positional().ok_or_else(|| usage("missing a queue"))?;
                let limit = match line.flag("--limit") {
                    None => DEFAULT_SHOW_LIMIT,
                    Some(raw) => match raw.parse::<usize>() {
                        Ok(limit) if limit > 0 => limit,
                        _ => return Err(usage(format!("--limit {raw:?} is not a positive number"))),
                    },
                };
                Command::Dlq(DlqCommand::Show {
                    queue: work_queue(&queue),
                    limit,
                })
            }
            ("dlq", "redrive") => {
                let queue = line.positional().ok_or_else(|| usage("missing a queue"))?;
                let selection = match (line.flag("--id"), line.switch("--all")) {
                    (Some(id), false) => Selection::Id(id),
                    (None, true) => Selection::All,
                    _ => return Err(usage("dlq redrive needs exactly one of --id ID and --all")),
                };
                Command::Dlq(DlqCommand::Redrive {
                    queue: work_queue(&queue),
                    selection,
                })
            }
            ("orders", "stranded") => {
                let older_than = match line.flag("--older-than") {
                    None => DEFAULT_STRANDED_AGE,
                    Some(raw) => parse_duration(&raw).map_err(|reason| usage(format!("--older-than: {reason}")))?,
                };
                Command::Orders(OrdersCommand::Stranded { older_than })
            }
            ("orders", "repair") => {
                let which = match (line.flag("--id"), line.switch("--all")) {
                    (Some(id), false) => Stranded::Id(
                        id.parse()
                            .map_err(|_| usage(format!("--id {id:?} is not an order id")))?,
                    ),
                    (None, true) => Stranded::OlderThan(match line.flag("--older-than") {
                        None => DEFAULT_STRANDED_AGE,
                        Some(raw) => parse_duration(&raw).map_err(|reason| usage(format!("--older-than: {reason}")))?,
                    }),
                    _ => return Err(usage("orders repair needs exactly one of --id ORDER and --all")),
                };
                let action = if line.switch("--reject") {
                    Repair::Reject
                } else {
                    Repair::AskAgain
                };
                Command::Orders(OrdersCommand::Repair { which, action })
            }
            ("mesh", "keygen") => Command::Mesh(MeshCommand::Keygen {
                name: line.positional().ok_or_else(|| usage("missing the caller's name"))?,
            }),
            ("mesh", "secret") => Command::Mesh(MeshCommand::Secret {
                secret_name: line.flag(SECRET_NAME).unwrap_or_else(|| DEFAULT_MESH_SECRET.to_owned()),
            }),
            ("mesh", "token") => {
                let audience = line.positional().ok_or_else(|| usage("missing the service"))?;
                let method = line.positional().ok_or_else(|| usage("missing the method"))?;
                let caller = line.flag("--as").ok_or_else(|| usage("mesh token needs --as NAME"))?;
                let user = match (line.flag("--user"), line.flag("--role")) {
                    (None, None) => None,
                    (Some(id), Some(role)) => Some((
                        id.parse()
                            .map_err(|_| usage(format!("--user {id:?} is not a user id")))?,
                        role.parse()
                            .map_err(|reason: String| usage(format!("--role: {reason}")))?,
                    )),
                    _ => return Err(usage("--user and --role go together")),
                };
                let ttl = match line.flag("--ttl") {
                    None => shop_platform::grpc::mesh::DEFAULT_TOKEN_TTL,
                    Some(raw) => parse_duration(&raw).map_err(|reason| usage(format!("--ttl: {reason}")))?,
                };
                Command::Mesh(MeshCommand::Token {
                    audience,
                    method,
                    caller,
                    user,
                    ttl,
                })
            }
            _ => return Err(usage(format!("unknown command {group:?} {action:?}"))),
        },
        (Some(group), None) => return Err(usage(format!("{group:?} needs a command"))),
        (None, _) => return Err(usage("no command given")),
    };
    line.finish()?;
    Ok(command)
}

/// The work queue a name on the command line stands for: `stock.reserve.dead` and
/// `stock.reserve` both mean `stock.reserve` (whose dead letters are in `stock.reserve.dead`).
pub fn work_queue(name: &str) -> String {
    name.strip_suffix(".dead").unwrap_or(name).to_owned()
}

/// A command line split into positional words (in order) and flags (anywhere); each command
/// takes what it understands, and anything left over is a mistake.
struct Line {
    positionals: std::collections::VecDeque<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Line {
    fn split(args: Vec<String>) -> Result<Self, UsageError> {
        let mut positionals = std::collections::VecDeque::new();
        let mut flags = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with("--") {
                positionals.push_back(arg);
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            if VALUE_FLAGS.contains(&name.as_str()) || name == SECRET_NAME {
                let value = match inline {
                    Some(value) => value,
                    None => args.next().ok_or_else(|| usage(format!("{name} needs a value")))?,
                };
                flags.push((name, Some(value)));
            } else if SWITCHES.contains(&name.as_str()) && inline.is_none() {
                flags.push((name, None));
            } else {
                return Err(usage(format!("unknown option {name:?}")));
            }
        }
        Ok(Self { positionals, flags })
    }

    fn positional(&mut self) -> Option<String> {
        self.positionals.pop_front()
    }

    /// The value of flag `name`, taken off the line.
    fn flag(&mut self, name: &str) -> Option<String> {
        self.take(name).flatten()
    }

    /// Whether switch `name` was given, taken off the line.
    fn switch(&mut self, name: &str) -> bool {
        self.take(name).is_some()
    }

    fn take(&mut self, name: &str) -> Option<Option<String>> {
        let at = self.flags.iter().position(|(flag, _)| flag == name)?;
        Some(self.flags.remove(at).1)
    }

    /// Refuses anything left over.
    fn finish(self) -> Result<(), UsageError> {
        if let Some(extra) = self.positionals.front() {
            return Err(usage(format!("unexpected argument {extra:?}")));
        }
        match self.flags.first() {
            Some((name, _)) => Err(usage(format!(
                "{name} is not expected here (given twice, or not an option of this command)"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(str::to_owned)).map_err(|error| error.to_string())
    }

    #[test]
    fn every_command_parses_with_its_defaults() {
        assert_eq!(parsed("dlq list"), Ok(Command::Dlq(DlqCommand::List)));
        assert_eq!(
            parsed("dlq show stock.results"),
            Ok(Command::Dlq(DlqCommand::Show {
                queue: "stock.results".into(),
                limit: DEFAULT_SHOW_LIMIT
            }))
        );
        assert_eq!(
            parsed("orders stranded"),
            Ok(Command::Orders(OrdersCommand::Stranded {
                older_than: DEFAULT_STRANDED_AGE
            }))
        );
        assert_eq!(parsed("--help"), Ok(Command::Help));
        assert_eq!(parsed("dlq show x --help"), Ok(Command::Help));
    }

    #[test]
    fn flags_take_values_either_way_and_anywhere() {
        let show = Ok(Command::Dlq(DlqCommand::Show {
            queue: "stock.reserve".into(),
            limit: 3,
        }));
        assert_eq!(parsed("dlq show stock.reserve --limit 3"), show);
        assert_eq!(parsed("dlq show --limit=3 stock.reserve.dead"), show);
        assert_eq!(
            parsed("dlq redrive stock.results.dead --id m-1"),
            Ok(Command::Dlq(DlqCommand::Redrive {
                queue: "stock.results".into(),
                selection: Selection::Id("m-1".into())
            }))
        );
        assert_eq!(
            parsed("dlq redrive --all stock.results"),
            Ok(Command::Dlq(DlqCommand::Redrive {
                queue: "stock.results".into(),
                selection: Selection::All
            }))
        );
        assert_eq!(
            parsed("orders stranded --older-than 2h"),
            Ok(Command::Orders(OrdersCommand::Stranded {
                older_than: Duration::from_secs(7200)
            }))
        );
    }

    #[test]
    fn mesh_commands_parse() {
        assert_eq!(
            parsed("mesh keygen reports"),
            Ok(Command::Mesh(MeshCommand::Keygen { name: "reports".into() }))
        );
        assert_eq!(
            parsed("mesh secret"),
            Ok(Command::Mesh(MeshCommand::Secret {
                secret_name: DEFAULT_MESH_SECRET.into()
            }))
        );
        let id = uuid::Uuid::nil();
        assert_eq!(
            parsed(&format!(
                "mesh token order shop.order.v1.OrderService/ListOrders --as reports --user {id} --role admin --ttl 1m"
            )),
            Ok(Command::Mesh(MeshCommand::Token {
                audience: "order".into(),
                method: "shop.order.v1.OrderService/ListOrders".into(),
                caller: "reports".into(),
                user: Some((id, shop_platform::grpc::identity::Role::Admin)),
                ttl: Duration::from_secs(60),
            }))
        );
    }

    #[test]
    fn repairs_name_their_orders() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            parsed(&format!("orders repair --id {id}")),
            Ok(Command::Orders(OrdersCommand::Repair {
                which: Stranded::Id(id),
                action: Repair::AskAgain
            }))
        );
        assert_eq!(
            parsed("orders repair --all --older-than 1h --reject"),
            Ok(Command::Orders(OrdersCommand::Repair {
                which: Stranded::OlderThan(Duration::from_secs(3600)),
                action: Repair::Reject
            }))
        );
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        for (line, reason) in [
            ("", "no command"),
            ("dlq", "needs a command"),
            ("dlq purge x", "unknown command"),
            ("dlq show", "missing a queue"),
            ("dlq show x --limit 0", "--limit"),
            ("dlq show x --limit", "needs a value"),
            ("dlq show x y", "unexpected argument"),
            ("dlq redrive x", "exactly one of"),
            ("dlq redrive x --all --id m-1", "exactly one of"),
            ("orders stranded --older-than 5", "--older-than"),
            ("orders stranded --verbose", "unknown option"),
            ("orders stranded --all", "not expected here"),
            ("orders repair", "exactly one of"),
            ("orders repair --id nope", "not an order id"),
            ("mesh keygen", "missing the caller"),
            ("mesh token user", "missing the method"),
            ("mesh token user m", "needs --as"),
            ("mesh token user m --as r --user x --role admin", "not a user id"),
            ("mesh token user m --as r --role admin", "go together"),
        ] {
            let error = parsed(line).err().unwrap_or_default();
            assert!(error.contains(reason), "{line:?}: {error:?} should mention {reason:?}");
        }
    }
}
