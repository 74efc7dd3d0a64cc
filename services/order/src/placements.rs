//! Writes new orders by group commit: the placements that arrive while a transaction is running
//! are written together in the next one: their idempotency keys (bound to their orders), the
//! orders, items and payments, and their outbox messages (ReserveStock, and OrderPlaced for an
//! order from the cart), with multi-row inserts and one commit. In a flash sale hundreds of customers order at once, and one commit for each
//! was what limited the service (docs/benchmarks.md).
//!
//! An order whose key exists already is left out of the batch and answered [`Written::KeyTaken`]
//! (its caller reads what the key stands for). If a batch fails, each of its orders is written
//! again on its own, so one order's failure is never another's.
//!
//! An order that asks for more than the catalog last said was left (sold out, in a flash sale)
//! is written in the same transaction, without its ReserveStock message, already as its
//! rejection leaves it (`results::reject`): nothing can come between its placement and its
//! rejection, not even a crash.

use crate::{
    clock::SharedClock,
    entity::{OrderStatus, item, order, payment},
    idempotency::{self, NewKey},
    results,
    store::{self, OrderRecord},
};
use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr};
use shop_platform::{
    db::insert_chunked,
    group_commit::{GroupCommit, GroupOptions, GroupWriter},
    outbox::{self, OutboxMessage},
};
use shop_proto::pb::events::StockRejected;
use std::borrow::Cow;

/// A new order to write, with the key that places it and its outbox messages.
#[derive(Debug)]
pub(crate) struct NewOrder {
    /// The order, its items and its payment.
    pub record: OrderRecord,
    /// The caller's idempotency key.
    pub key: String,
    /// The request's fingerprint.
    pub hash: String,
    /// Its ReserveStock message (none when sold out), and its OrderPlaced message for an order
    /// from the cart, made in the request's span (they carry the trace context).
    pub messages: Vec<OutboxMessage>,
    /// Set when the order asks for more than the catalog last said was left: it is written
    /// rejected, as this rejection says, without a reservation.
    pub sold_out: Option<StockRejected>,
}

impl NewOrder {
    /// The rows to write: the record as placed, or for a sold-out order as its rejection
    /// leaves it (at the instant it was placed).
    fn to_write(&self) -> Cow<'_, OrderRecord> {
        match &self.sold_out {
            None => Cow::Borrowed(&self.record),
            Some(rejection) => {
                let mut rejected = self.record.clone();
                results::reject(&mut rejected, rejection, self.record.order.placed_at);
                Cow::Owned(rejected)
            }
        }
    }
}

/// What became of a new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The order and its key are committed.
    Placed,
    /// Its key existed already; nothing was written.
    KeyTaken,
}

/// The group committer of new orders.
pub(crate) type Placements = GroupCommit<PlacementWriter>;

/// Starts the writers of new orders into `db`.
pub(crate) fn start(db: DatabaseConnection, clock: SharedClock) -> Placements {
    GroupCommit::start(PlacementWriter { db, clock }, GroupOptions::default())
}

/// Writes batches of new orders.
#[derive(Debug)]
pub(crate) struct PlacementWriter {
    db: DatabaseConnection,
    clock: SharedClock,
}

#[async_trait]
impl GroupWriter for PlacementWriter {
    type Item = NewOrder;
    type Outcome = Result<Written, DbErr>;

    async fn write(&self, orders: Vec<NewOrder>) -> Vec<Self::Outcome> {
        match self.write_all(&orders).await {
            Ok(written) => written.into_iter().map(Ok).collect(),
            Err(error) if orders.len() == 1 => vec![Err(error)],
            Err(error) => {
                tracing::warn!(%error, orders = orders.len(), "a batch of orders failed; writing each alone");
                let mut outcomes = Vec::with_capacity(orders.len());
                for one in orders.chunks(1) {
                    outcomes.push(self.write_all(one).await.map(|mut written| written.remove(0)));
                }
                outcomes
            }
        }
    }
}

impl PlacementWriter {
    /// Writes `orders` in one transaction; what became of each, in order.
    async fn write_all(&self, orders: &[NewOrder]) -> Result<Vec<Written>, DbErr> {
        let keys: Vec<NewKey<'_>> = orders
            .iter()
            .map(|new| NewKey {
                user: new.record.order.user_id,
                key: &new.key,
                hash: &new.hash,
                order_id: new.record.order.id,
            })
            .collect();
        let txn = store::begin_write(&self.db).await?;
        let claimed = idempotency::claim_keys(&txn, self.clock.now(), &keys).await?;
        let placed: Vec<&NewOrder> = orders
            .iter()
            .filter(|new| claimed.contains(&new.record.order.id))
            .collect();
        let records: Vec<Cow<'_, OrderRecord>> = placed.iter().map(|new| new.to_write()).collect();
        insert_chunked(
            &txn,
            records
                .iter()
                .map(|record| order::ActiveModel::from(record.order.clone())),
        )
        .await?;
        insert_chunked(
            &txn,
            records
                .iter()
                .flat_map(|record| record.items.iter().cloned().map(item::ActiveModel::from)),
        )
        .await?;
        insert_chunked(
            &txn,
            records
                .iter()
                .map(|record| payment::ActiveModel::from(record.payment.clone())),
        )
        .await?;
        outbox::enqueue_many(
            &txn,
            placed.iter().flat_map(|new| new.messages.iter().cloned()).collect(),
        )
        .await?;
        txn.commit().await?;
        let now = self.clock.now();
        // Logged and counted once committed (a batch that fails is written again order by order).
        for record in records
            .iter()
            .filter(|record| record.order.status == OrderStatus::Rejected)
        {
            let order_id = record.order.id;
            let reason = record.order.status_reason.as_deref().unwrap_or_default();
            tracing::info!(%order_id, %reason, "order rejected: out of stock");
            crate::metrics::reservation_ended(crate::metrics::Reservation::Rejected, record.order.placed_at, now);
        }
        Ok(orders
            .iter()
            .map(|new| {
                if claimed.contains(&new.record.order.id) {
                    Written::Placed
                } else {
                    Written::KeyTaken
                }
            })
            .collect())
    }
}
