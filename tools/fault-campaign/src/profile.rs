//! What a campaign does and when: how many buyers order for how long, the stock they order
//! from, and the faults injected meanwhile (each at a time from the start of the ordering).

use std::{fmt, time::Duration};

/// A service binary of the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// `shop-catalog`: products, stock, the reservation worker.
    Catalog,
    /// `shop-user`: accounts and sessions.
    User,
    /// `shop-order`: orders, payments, the stock-result consumer.
    Order,
    /// `shop-gateway`: the REST edge.
    Gateway,
}

impl Service {
    /// Every service, in start order (each learns the addresses of those before it).
    pub const ALL: [Self; 4] = [Self::Catalog, Self::User, Self::Order, Self::Gateway];

    /// Its binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Catalog => "shop-catalog",
            Self::User => "shop-user",
            Self::Order => "shop-order",
            Self::Gateway => "shop-gateway",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// A backend link that can be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// Every service's PostgreSQL connections.
    Postgres,
    /// Every service's RabbitMQ connections.
    RabbitMq,
    /// Every service's (and the gateway's) Redis connections.
    Redis,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "PostgreSQL",
            Self::RabbitMq => "RabbitMQ",
            Self::Redis => "Redis",
        })
    }
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the service, keep it down for `down`, start it again.
    Kill {
        /// Which.
        service: Service,
        /// How long it stays down.
        down: Duration,
    },
    /// Place a burst of `orders` orders at once and SIGKILL the catalog while it works through
    /// them (once half the burst is placed), then start it again after `down`.
    KillCatalogMidBatch {
        /// Orders in the burst.
        orders: usize,
        /// How long the catalog stays down.
        down: Duration,
    },
    /// Cut every connection to a backend and refuse new ones for `outage`.
    Cut {
        /// Which backend.
        link: Link,
        /// For how long.
        outage: Duration,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill { service, down } => write!(f, "SIGKILL {service}, down {}s", down.as_secs_f64()),
            Self::KillCatalogMidBatch { orders, down } => {
                write!(
                    f,
                    "SIGKILL shop-catalog mid-batch ({orders}-order burst), down {}s",
                    down.as_secs_f64()
                )
            }
            Self::Cut { link, outage } => write!(f, "cut {link} for {}s", outage.as_secs_f64()),
        }
    }
}

/// A fault and when it starts, from the start of ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// When.
    pub at: Duration,
    /// What.
    pub fault: Fault,
}

/// A whole campaign.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name, for the report.
    pub name: &'static str,
    /// Concurrent buyers, each with its own account.
    pub buyers: usize,
    /// How long the buyers order.
    pub ordering: Duration,
    /// The stock of each product put on sale (varied, so some sell out and some do not).
    pub stock: Vec<i64>,
    /// The faults, in time order; each ends before the ordering does.
    pub faults: Vec<Scheduled>,
    /// Every order must have left `pending` this long after the last fault ended.
    pub settle_limit: Duration,
}

const fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn at(seconds: u64, fault: Fault) -> Scheduled {
    Scheduled {
        at: secs(seconds),
        fault,
    }
}

impl Profile {
    /// Every fault the platform must survive: each service killed (the catalog twice, once mid-batch), each
    /// link cut for a few seconds, and PostgreSQL once for 30 s. About four minutes.
    pub fn full() -> Self {
        use {Fault::*, Link::*, Service::*};
        Self {
            name: "full",
            buyers: 24,
            ordering: secs(180),
            stock: vec![60, 150, 400, 1_000, 3_000, 10_000],
            faults: vec![
                at(
                    10,
                    Kill {
                        service: User,
                        down: secs(2),
                    },
                ),
                at(
                    20,
                    Kill {
                        service: Catalog,
                        down: secs(3),
                    },
                ),
                at(
                    32,
                    Cut {
                        link: Redis,
                        outage: secs(5),
                    },
                ),
                at(
                    45,
                    Kill {
                        service: Order,
                        down: secs(2),
                    },
                ),
                at(
                    57,
                    Cut {
                        link: RabbitMq,
                        outage: secs(6),
                    },
                ),
                at(
                    72,
                    Kill {
                        service: Gateway,
                        down: secs(1),
                    },
                ),
                at(
                    82,
                    Cut {
                        link: Postgres,
                        outage: secs(5),
                    },
                ),
                at(
                    98,
                    KillCatalogMidBatch {
                        orders: 300,
                        down: secs(3),
                    },
                ),
                at(
                    115,
                    Cut {
                        link: Postgres,
                        outage: secs(30),
                    },
                ),
                at(
                    155,
                    Cut {
                        link: RabbitMq,
                        outage: secs(3),
                    },
                ),
                at(
                    165,
                    Cut {
                        link: Redis,
                        outage: secs(3),
                    },
                ),
            ],
            settle_limit: secs(30),
        }
    }

    /// The CI cut: one service killed, one short PostgreSQL cut, one RabbitMQ cut; about a
    /// minute and a half with start-up and settling.
    pub fn short() -> Self {
        use {Fault::*, Link::*, Service::*};
        Self {
            name: "short",
            buyers: 12,
            ordering: secs(30),
            stock: vec![40, 150, 600, 5_000],
            faults: vec![
                at(
                    5,
                    Kill {
                        service: Order,
                        down: secs(2),
                    },
                ),
                at(
                    12,
                    Cut {
                        link: Postgres,
                        outage: secs(4),
                    },
                ),
                at(
                    21,
                    Cut {
                        link: RabbitMq,
                        outage: secs(4),
                    },
                ),
            ],
            settle_limit: secs(30),
        }
    }

    /// No faults at all: the same buyers and checks, to show that the harness itself breaks
    /// nothing (every check passes on a healthy deployment).
    pub fn calm() -> Self {
        Self {
            name: "calm",
            buyers: 8,
            ordering: secs(12),
            stock: vec![30, 500],
            faults: Vec::new(),
            settle_limit: secs(30),
        }
    }

    /// The profile called `name`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "full" => Some(Self::full()),
            "short" => Some(Self::short()),
            "calm" => Some(Self::calm()),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// How long a fault lasts at most (a killed service also takes a moment to start).
    fn length(fault: Fault) -> Duration {
        match fault {
            Fault::Kill { down, .. } | Fault::KillCatalogMidBatch { down, .. } => down + secs(5),
            Fault::Cut { outage, .. } => outage,
        }
    }

    #[test]
    fn faults_are_in_order_apart_and_end_before_the_ordering_does() {
        for profile in [Profile::full(), Profile::short(), Profile::calm()] {
            let mut free_from = Duration::ZERO;
            for scheduled in &profile.faults {
                assert!(
                    scheduled.at >= free_from,
                    "{}: {scheduled:?} overlaps the one before",
                    profile.name
                );
                free_from = scheduled.at + length(scheduled.fault);
            }
            assert!(
                free_from <= profile.ordering,
                "{}: the last fault outlasts the ordering",
                profile.name
            );
        }
    }

    #[test]
    fn the_full_campaign_has_every_fault() {
        let faults: Vec<Fault> = Profile::full().faults.iter().map(|s| s.fault).collect();
        for service in Service::ALL {
            assert!(
                faults
                    .iter()
                    .any(|f| matches!(f, Fault::Kill { service: s, .. } if *s == service)),
                "{service}"
            );
        }
        assert!(faults.iter().any(|f| matches!(f, Fault::KillCatalogMidBatch { .. })));
        for link in [Link::Postgres, Link::RabbitMq, Link::Redis] {
            assert!(
                faults
                    .iter()
                    .any(|f| matches!(f, Fault::Cut { link: l, .. } if *l == link)),
                "{link}"
            );
        }
        assert!(faults.contains(&Fault::Cut {
            link: Link::Postgres,
            outage: secs(30)
        }));
    }
}
