//! What the catalog deletes once it has done its job (swept by the platform's [`Sweeper`], see
//! `docs/reliability.md`, "Retention"):
//!
//! - published outbox rows and inbox ids, as every service ([`messaging_rules`]);
//! - applied releases (`releases`, keyed by order and release id) older than
//!   `SHOP_RETENTION_RELEASES`, but only those of orders with nothing left to give back: every
//!   line of the order's reservation is fully released, or the order never held stock (it was
//!   refused, or released before its reservation arrived, which closes it as refused). A
//!   release row exists so that a release applied twice gives back once; for such an order a
//!   repeated release gives back nothing whether its row is there or not (the ledger gives
//!   back at most what is still held), so deleting the row changes no outcome. The releases of
//!   an order still holding stock (one item returned, the others kept) are kept whatever their
//!   age: without its row, a repeat of that release would give the item's stock back twice.
//!
//! `reservations` and `reservation_lines` are the ledger itself and are never swept: a late
//! or re-sent ReserveStock is answered from them, and must never reserve twice.

use sea_orm::DatabaseConnection;
use shop_platform::retention::{Rule, Sweeper, messaging_rules};

use crate::config::CatalogRetention;

/// The releases whose order holds nothing more to give back.
const NOTHING_LEFT_TO_GIVE_BACK: &str = "NOT EXISTS (SELECT 1 FROM reservation_lines \
     WHERE reservation_lines.order_id = releases.order_id \
     AND reservation_lines.released < reservation_lines.quantity)";

/// The catalog's retention rules.
pub fn rules(retention: &CatalogRetention) -> Vec<Rule> {
    let mut rules = messaging_rules(&retention.platform);
    rules.push(Rule::new("releases", "created_at", retention.releases).only_where(NOTHING_LEFT_TO_GIVE_BACK));
    rules
}

/// The catalog's sweeper.
pub fn sweeper(db: DatabaseConnection, retention: &CatalogRetention) -> Sweeper {
    Sweeper::new(db, rules(retention))
}
