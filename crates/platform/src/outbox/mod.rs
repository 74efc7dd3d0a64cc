//! The transactional outbox, for any service: a message is written as a row in the SAME
//! database transaction as the state change it announces, so either both happen or neither.
//! The [`relay`] publishes unsent rows to the work queue in order, with publisher confirms, and
//! marks them sent; a crash between commit and publish only delays the message. Delivery is
//! at least once, so consumers record what they applied in the [`inbox`] (keyed by message id)
//! and never apply one message twice.

pub mod inbox;
mod migration;
pub mod relay;

use std::collections::BTreeMap;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr};
use uuid::Uuid;

pub use migration::CreateMessagingTables;
pub use relay::{OutboxRelay, RelayOptions};

/// The `outbox` table: one row per message to publish.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A message waiting to be (or already) published.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Insertion order; the relay publishes in this order.
        #[sea_orm(primary_key)]
        pub seq: i64,
        /// The message id (AMQP `message_id`), kept across republishing.
        #[sea_orm(unique)]
        pub id: Uuid,
        /// The queue to publish to.
        pub destination: String,
        /// The payload's type name, e.g. `shop.events.v1.ReserveStock`.
        pub kind: String,
        /// The encoded payload.
        pub payload: Vec<u8>,
        /// JSON object of string headers (trace context of the transaction that wrote it).
        pub headers: String,
        /// When the row was written.
        pub created_at: DateTimeUtc,
        /// When the broker confirmed it; `None` while waiting.
        pub published_at: Option<DateTimeUtc>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Writes a message to the outbox inside the caller's transaction (pass the transaction as
/// `conn`). The current span's trace context goes along in the headers, so the consumer's
/// span joins the trace of the request that caused it. Returns the message id.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    destination: &str,
    kind: &str,
    payload: Vec<u8>,
) -> Result<Uuid, DbErr> {
    let mut headers = BTreeMap::new();
    crate::telemetry::propagation::inject_message(&mut headers);
    let id = Uuid::now_v7();
    entity::ActiveModel {
        id: Set(id),
        destination: Set(destination.to_owned()),
        kind: Set(kind.to_owned()),
        payload: Set(payload),
        headers: Set(serde_json::to_string(&headers).unwrap_or_else(|_| "{}".to_owned())),
        created_at: Set(chrono::Utc::now()),
        published_at: Set(None),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(id)
}
