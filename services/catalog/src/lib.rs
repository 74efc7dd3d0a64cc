//! The catalog service: products, stock levels, and the stock reservation worker fed by the work queue (`shop.catalog.v1`).
//! A library, so the `catalog` binary and the one-process `shop` binary start it the same way.
//!
//! What it keeps where (its own schema or SQLite file): products with their stock; the
//! reservation ledger (one reservation per order with its lines, and the releases applied),
//! which makes every stock message apply once; its outbox (answers to the order service) and
//! inbox (ids of the messages applied).

pub mod config;
pub mod entity;
mod grpc;
pub mod migration;
pub mod products;
pub mod retention;
mod service;
pub mod stock;

pub use config::{CatalogConfig, CatalogRetention, StockConfig, StockQueues};
pub use service::CatalogService;
