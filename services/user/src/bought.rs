//! The cart lines an order bought leave the cart: the consumer of `OrderPlaced` (see
//! shop/events/v1/events.proto), which the order service writes to its outbox in the very
//! transaction that places an order from the cart. The message waits in the queue while this
//! service is down, so the lines go once it is back, whatever happened meanwhile.
//!
//! Removing lines by id is idempotent (a line gone already is skipped, and a line made later
//! has a new id), so a redelivered message changes nothing and no inbox is kept. The messages
//! that have arrived (up to the prefetch) are applied in one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use prost::Message as _;
use sea_orm::{DatabaseConnection, TransactionTrait as _};
use shop_platform::{
    grpc::convert::echo,
    queue::{
        Message, WorkQueue,
        runner::{ConsumerRunner, Handler, Poison, Received, RunnerOptions},
    },
};
use shop_proto::{is_message_type, pb::events};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cart;

/// Unsettled deliveries the consumer holds at a time.
const PREFETCH: u16 = 16;

/// The lines one order bought from its customer's cart.
#[derive(Debug)]
struct Bought {
    user_id: Uuid,
    item_ids: Vec<Uuid>,
}

/// Removes bought lines from carts.
struct BoughtHandler {
    db: DatabaseConnection,
}

#[async_trait]
impl Handler for BoughtHandler {
    type Item = Bought;

    fn decode(&self, message: &Message) -> Result<Bought, Poison> {
        if !is_message_type::<events::OrderPlaced>(&message.kind) {
            return Err(Poison::new(
                "unexpected_type",
                format!("unexpected message type {}", echo(&message.kind, 80)),
            ));
        }
        let placed = events::OrderPlaced::decode(message.payload.as_slice())
            .map_err(|error| Poison::new("undecodable", error.to_string()))?;
        let parse = |raw: &str| {
            Uuid::parse_str(raw).map_err(|_| Poison::new("malformed_id", format!("malformed id {}", echo(raw, 40))))
        };
        // On the delivery's span (the runner's `process <queue>`), for traces and logs.
        tracing::Span::current().record("shop.order.id", tracing::field::display(parse(&placed.order_id)?));
        Ok(Bought {
            user_id: parse(&placed.user_id)?,
            item_ids: placed
                .cart_item_ids
                .iter()
                .map(|id| parse(id))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn apply(&self, batch: &[Received<'_, Bought>]) -> anyhow::Result<()> {
        let txn = self.db.begin().await?;
        for one in batch {
            let removed = cart::remove_bought(&txn, one.item.user_id, &one.item.item_ids).await?;
            tracing::debug!(parent: one.span, removed, bought = one.item.item_ids.len(), "bought lines left the cart");
        }
        txn.commit().await?;
        Ok(())
    }

    fn poison_reasons(&self) -> &'static [&'static str] {
        &["undecodable", "unexpected_type", "malformed_id"]
    }
}

/// Consumes `queue_name` until `shutdown`, removing the lines each order bought.
pub async fn run(db: DatabaseConnection, queue: Arc<dyn WorkQueue>, queue_name: String, shutdown: CancellationToken) {
    let options = RunnerOptions {
        prefetch: PREFETCH,
        batch_size: usize::from(PREFETCH),
        ..RunnerOptions::default()
    };
    ConsumerRunner::new(queue, queue_name, Arc::new(BoughtHandler { db }), options)
        .run(shutdown)
        .await;
}
