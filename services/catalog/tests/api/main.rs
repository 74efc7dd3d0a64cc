//! The catalog service against real PostgreSQL and RabbitMQ: the product rpcs through a tonic
//! client, and the reservation worker under concurrency, duplicates and failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod health;
mod helpers;
mod migrate_job;
mod products;
mod retention;
mod sqlite;
mod stock;
mod stock_faults;
