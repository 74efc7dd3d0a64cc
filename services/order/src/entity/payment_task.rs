//! `payment_tasks`: money to move through the provider, recorded in the transaction of the
//! state change that calls for it (a reservation to pay for, a cancellation or a return to
//! refund), and carried out after that commit by the payment worker. The task's id is the
//! provider's idempotency key, so a task tried twice (a crash after the provider answered and
//! before the outcome was recorded) moves the money once.

use sea_orm::entity::prelude::*;

/// A capture or a refund to carry out.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_tasks")]
pub struct Model {
    /// The task's id; also the provider's idempotency key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The order paid for or refunded.
    pub order_id: Uuid,
    /// Capture or refund.
    pub kind: TaskKind,
    /// For a refund of a returned item: the item.
    pub item_id: Option<Uuid>,
    /// The amount in minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Where it stands.
    pub state: TaskState,
    /// Provider calls made so far.
    pub attempts: i32,
    /// When it may be tried (again): a worker that takes the task moves this past its own
    /// attempt, so that a worker that dies mid-attempt leaves it to another one afterwards.
    pub next_attempt_at: DateTimeUtc,
    /// The last failure, for operators.
    pub last_error: Option<String>,
    /// The provider's reference, once done.
    pub provider_reference: Option<String>,
    /// When it was requested.
    pub created_at: DateTimeUtc,
    /// When it was done or declined.
    pub completed_at: Option<DateTimeUtc>,
}

/// What a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
pub enum TaskKind {
    /// Take the order's total.
    #[sea_orm(string_value = "capture")]
    Capture,
    /// Give money back.
    #[sea_orm(string_value = "refund")]
    Refund,
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
pub enum TaskState {
    /// To do (again, after a failure).
    #[sea_orm(string_value = "requested")]
    Requested,
    /// The provider did it.
    #[sea_orm(string_value = "done")]
    Done,
    /// The provider refused a capture.
    #[sea_orm(string_value = "declined")]
    Declined,
}

/// Relations are followed by explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
