//! What every part of the order service shares: its database, its clock, the payment provider,
//! its settings, the writer of new orders and the reader of their keys, and the outbox relay and
//! payment worker to wake after a commit that gave them work, and the catalog's recent answers
//! about products, which its stock results update.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use shop_platform::outbox::OutboxRelay;

use crate::{
    clock::SharedClock, config::OrderConfig, idempotency::KeyLookups, payment::PaymentProvider, placements::Placements,
    settlement::PaymentsDue, upstream::RecentProducts,
};

/// The order service's shared state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Context {
    /// The order database.
    pub db: DatabaseConnection,
    /// Where "now" comes from.
    pub clock: SharedClock,
    /// Captures and refunds.
    pub payments: Arc<dyn PaymentProvider>,
    /// The settings.
    pub config: Arc<OrderConfig>,
    /// The relay publishing the outbox.
    pub relay: OutboxRelay,
    /// The payment worker's door: captures handed to it, and its wake-up.
    pub(crate) payments_due: Arc<PaymentsDue>,
    /// Writes new orders, many to a transaction.
    pub(crate) placements: Placements,
    /// Looks up idempotency keys, many to a query.
    pub(crate) keys: KeyLookups,
    /// The catalog's recent answers about products (PlaceOrder reads them; its stock
    /// rejections lower their stock).
    pub(crate) recent_products: Arc<RecentProducts>,
}
