//! `idempotency_keys`: PlaceOrder's keys per user, each written bound to its order in the
//! transaction that writes the order. Rows of earlier versions may still hold a claim in
//! progress (`order_id` empty, `claimed_until` a short lease), taken over once it ran out.

use sea_orm::entity::prelude::*;

/// One user's key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// The caller.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The client's key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// SHA-256 (hex) of the request in canonical form: another request under the same key is
    /// refused.
    pub request_hash: String,
    /// The order placed under the key; `None` only in an earlier version's claim in progress.
    pub order_id: Option<Uuid>,
    /// Until when an earlier version's claim in progress holds (for rows written bound to
    /// their order: when they were written).
    pub claimed_until: DateTimeUtc,
    /// When the key was first seen.
    pub created_at: DateTimeUtc,
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
