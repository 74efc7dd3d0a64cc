//! The order service: orders with price snapshots, payments, shipment progression, cancellation and returns (`shop.order.v1`).
//! A library, so the `order` binary and the one-process `shop` binary start it the same way.
//!
//! The path of an order: PlaceOrder writes it PENDING with a ReserveStock in its outbox (and,
//! for an order from the cart, an OrderPlaced that takes the bought lines out of the cart);
//! the catalog's answer is applied by the results consumer (REJECTED, or a capture requested);
//! the payment worker captures after that commit (PAID or PAYMENT_FAILED); the reconciler asks
//! again for answers that do not come, and gives up on them in the end; the shipment scheduler
//! ships and delivers; cancel and return give stock and money back.

mod access;
pub mod clock;
pub mod config;
mod context;
mod convert;
pub mod entity;
mod grpc;
mod idempotency;
mod lifecycle;
mod metrics;
pub mod migration;
pub mod payment;
mod place;
pub mod placed;
mod placements;
mod queries;
pub mod reconcile;
mod results;
pub mod retention;
mod service;
pub mod settlement;
pub mod shipping;
pub mod stock;
mod store;
mod upstream;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{OrderConfig, OrderQueues, OrderRetention, ReconcileConfig, StockQueues};
pub use metrics::PendingOrders;
pub use payment::{PaymentProvider, TestPaymentProvider};
pub use reconcile::Reconciler;
pub use service::{OrderService, OrderServiceBuilder};
pub use settlement::PaymentWorker;
pub use shipping::ShipmentScheduler;
