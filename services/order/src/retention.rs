//! What the order service deletes once it has done its job (swept by the platform's
//! [`Sweeper`], see `docs/reliability.md`, "Retention"):
//!
//! - published outbox rows and inbox ids, as every service ([`messaging_rules`]);
//! - idempotency keys bound to their order, once older than `SHOP_RETENTION_IDEMPOTENCY`:
//!   clients retry within minutes, and a key's only use is to answer such a retry with its
//!   order. The order itself stays;
//! - claims that never got their order (a process died mid-placement) once their lease ended
//!   that long ago: a claim whose lease still runs is never deleted, so a placement in
//!   progress keeps its key;
//! - finished payment tasks (done or declined) older than `SHOP_RETENTION_PAYMENT_TASKS`. A
//!   task is the work item of one capture or refund, never the record of the money: that is
//!   the payment row and the `refunds` rows, which stay. Nothing asks for a finished task again
//!   either: a capture or refund is requested only from a state that the finished task has
//!   moved the order (or item) out of, so a deleted task cannot be requested a second time.

use sea_orm::DatabaseConnection;
use shop_platform::retention::{Rule, Sweeper, messaging_rules};

use crate::config::OrderRetention;

/// The order service's retention rules.
pub fn rules(retention: &OrderRetention) -> Vec<Rule> {
    let mut rules = messaging_rules(&retention.platform);
    rules.extend([
        Rule::new("idempotency_keys", "created_at", retention.idempotency_keys).only_where("order_id IS NOT NULL"),
        Rule::new("idempotency_keys", "claimed_until", retention.idempotency_keys).only_where("order_id IS NULL"),
        Rule::new("payment_tasks", "completed_at", retention.payment_tasks).only_where("state IN ('done', 'declined')"),
    ]);
    rules
}

/// The order service's sweeper.
pub fn sweeper(db: DatabaseConnection, retention: &OrderRetention) -> Sweeper {
    Sweeper::new(db, rules(retention))
}
