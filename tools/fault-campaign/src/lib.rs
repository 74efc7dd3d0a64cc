//! The fault campaign: the four service binaries on the real PostgreSQL, RabbitMQ and Redis,
//! each link through a cuttable TCP proxy; many buyers ordering through the REST edge for a
//! bounded time while services are SIGKILLed and links cut on a schedule; then the checks that
//! the order → stock pipeline held (nothing stranded, lost, oversold, doubled or dead-lettered,
//! refunds right, a fresh order paid) and a table of the figures.
//!
//! Everything it starts runs on loopback and is isolated (own database, queue names, cache
//! prefix); it never touches the servers themselves, only its own proxies to them.

pub mod accounts;
pub mod api;
pub mod binaries;
pub mod campaign;
pub mod checks;
pub mod ledger;
pub mod observe;
pub mod process;
pub mod profile;
pub mod report;
pub mod stack;
pub mod workload;

pub use binaries::Binaries;
pub use campaign::run;
pub use profile::Profile;
pub use report::Report;
