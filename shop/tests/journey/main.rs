//! End to end, over the public REST API only (docs/api.md): the real binaries as separate
//! processes on PostgreSQL, Redis, RabbitMQ and a real SMTP server, and the one-process `shop`
//! binary on its embedded defaults, both driven through the same journey; then abuse of the
//! edge (bad tokens, other users' resources, bad input, rate limits) and the authorization
//! matrix, forged callers on the services' gRPC ports included; and the telemetry of the
//! separate binaries, received by a real OTLP receiver and scraped by a real Prometheus.
//!
//! The service binaries must be built (`cargo build --bins`, or any run of the whole
//! workspace's tests); each test starts its own stack, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod api;
mod authz;
mod cluster;
mod journey;
mod mail;
mod memory;
mod observability;
mod outage;
mod process;
mod stack;
mod telemetry;
