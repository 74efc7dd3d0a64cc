//! `sessions`: one row per sign-in; ends on logout, refresh-token reuse, password change, role
//! change or account deletion.

use sea_orm::entity::prelude::*;

/// A session (the `sid` of its access tokens).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    /// The session id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose session it is.
    pub user_id: Uuid,
    /// When it started.
    pub created_at: DateTimeUtc,
    /// When it ended; `None` while it lasts.
    pub ended_at: Option<DateTimeUtc>,
}

/// No navigable relations are needed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
