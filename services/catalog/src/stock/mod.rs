//! The stock reservation worker (docs/architecture.md, the order path, steps 3 and 5): consumes `ReserveStock` and
//! `ReleaseStock` from their durable queues and applies them so that stock is never oversold,
//! lost, or changed twice, by any number of replicas at once.
//!
//! - [`command`]: messages decoded and checked; what can never apply is dead-lettered at once.
//! - [`ledger`]: the arithmetic, in memory: per order all or nothing, in arrival order.
//! - [`store`]: one transaction per batch: inbox, row locks in a fixed order, writes, outbox.
//! - [`worker`]: the consumer loops: batches, acknowledgement after commit, retries.
//!
//! Why batches: on a flash-sale product every reservation updates the same row, and one
//! transaction per message would wait for one commit (a disk flush) each. A batch pays one
//! commit for hundreds of orders and writes the row once.

pub mod answer;
pub mod command;
pub mod ledger;
mod metrics;
pub mod store;
pub mod worker;

pub use worker::StockWorker;
