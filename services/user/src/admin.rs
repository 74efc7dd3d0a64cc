//! What admins do with accounts: list them (newest first, keyset pages) and change roles. A role
//! change ends every session of the user, so no token keeps the old role, and never leaves the
//! shop without an admin.

use sea_orm::{ActiveModelTrait as _, ActiveValue::Set, EntityTrait as _, IntoActiveModel as _, TransactionTrait as _};
use shop_platform::{
    grpc::{
        error::ServiceError,
        identity::{Caller, Role},
    },
    paging,
};
use uuid::Uuid;

use crate::{context::Context, entity::user, sessions::now, users};

/// The cursor scope of ListUsers (it has no filters).
const LIST_SCOPE: &str = "shop.user.v1.ListUsers";

/// A page of accounts.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// The accounts, newest first.
    pub users: Vec<user::Model>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl Context {
    /// A page of accounts, newest first (by `created_at`, then id, both descending).
    pub async fn list_users(&self, caller: &Caller, limit: u32, cursor: &str) -> Result<UserPage, ServiceError> {
        caller.require_role(&[Role::Admin])?;
        let limit = paging::limit(limit)?;
        let after = paging::decode_cursor(cursor, LIST_SCOPE)?;
        let (users, next) = paging::newest_first(
            &self.db,
            user::Entity::find(),
            (user::Column::CreatedAt, user::Column::Id),
            after,
            limit,
            |row| paging::position(row.created_at, row.id),
        )
        .await?;
        let next_cursor = next.map(|position| paging::encode_cursor(&position, LIST_SCOPE));
        Ok(UserPage { users, next_cursor })
    }

    /// Gives user `id` the role `role` and ends all their sessions.
    #[tracing::instrument(skip_all, fields(admin = %caller.user_id))]
    pub async fn set_user_role(&self, caller: &Caller, id: Uuid, role: Role) -> Result<user::Model, ServiceError> {
        caller.require_role(&[Role::Admin])?;
        let txn = self.db.begin().await?;
        users::lock_admins(&txn).await?;
        let account = users::get(&txn, id).await?;
        if account.role == role.as_str() {
            txn.commit().await?;
            return Ok(account);
        }
        users::ensure_not_last_admin(&txn, &account).await?;
        let mut row = account.into_active_model();
        row.role = Set(role.as_str().to_owned());
        row.updated_at = Set(now());
        let updated = row.update(&txn).await?;
        txn.commit().await?;
        self.sessions.end_all_of(id, None).await?;
        tracing::info!(user = %id, %role, "role changed");
        Ok(updated)
    }
}
