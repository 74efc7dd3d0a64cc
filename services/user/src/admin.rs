//! What admins do with accounts: list them (newest first, keyset pages) and change roles. A role
//! change ends every session of the user, so no token keeps the old role, and never leaves the
//! shop without an admin.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, Condition, EntityTrait as _, ExprTrait as _,
    IntoActiveModel as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, TransactionTrait as _,
};
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
        let after: Option<(i64, Uuid)> = paging::decode_cursor(cursor, LIST_SCOPE)?;
        let mut query = user::Entity::find()
            .order_by_desc(user::Column::CreatedAt)
            .order_by_desc(user::Column::Id)
            .limit(limit + 1);
        if let Some((micros, id)) = after {
            let at: DateTime<Utc> =
                DateTime::from_timestamp_micros(micros).ok_or_else(|| ServiceError::InvalidArgument {
                    code: "invalid_cursor",
                    message: "the cursor is not valid for this list".to_owned(),
                })?;
            query = query.filter(
                Condition::any()
                    .add(user::Column::CreatedAt.lt(at))
                    .add(user::Column::CreatedAt.eq(at).and(user::Column::Id.lt(id))),
            );
        }
        let mut users = query.all(&self.db).await?;
        let more = users.len() as u64 > limit;
        users.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = match users.last() {
            Some(last) if more => Some(paging::encode_cursor(
                &(last.created_at.timestamp_micros(), last.id),
                LIST_SCOPE,
            )),
            _ => None,
        };
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
