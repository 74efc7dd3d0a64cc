//! `idempotency_keys`: PlaceOrder's keys per user. A key is claimed before the catalog is asked
//! (`order_id` empty, `claimed_until` a short lease) and bound to its order in the transaction
//! that writes the order; a claim whose lease ran out (its caller died) may be taken over.

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
    /// The order placed under the key; `None` while the placement is in progress.
    pub order_id: Option<Uuid>,
    /// Until when an in-progress claim holds.
    pub claimed_until: DateTimeUtc,
    /// When the key was first seen.
    pub created_at: DateTimeUtc,
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
