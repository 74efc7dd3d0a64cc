//! The caller's own account: profile, password change, deletion; and the admin account
//! bootstrapped at start. Every operation takes the user from the verified identity, never from
//! a request field, so no one reaches another user's account here.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, EntityTrait as _, IntoActiveModel as _, TransactionTrait as _,
    sea_query::OnConflict,
};
use shop_platform::grpc::{
    error::ServiceError,
    identity::{Caller, Role},
};
use uuid::Uuid;

use crate::{
    context::Context,
    domain::{self, Email, Password},
    entity::user,
    sessions::now,
    throttle::PasswordCheck,
    users,
};

/// A partial profile update; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    /// The new display name.
    pub name: Option<String>,
    /// The new phone number.
    pub phone: Option<String>,
    /// The new shipping address.
    pub address: Option<String>,
}

impl Context {
    /// The caller's account.
    pub async fn me(&self, caller: &Caller) -> Result<user::Model, ServiceError> {
        users::get(&self.db, caller.user_id).await
    }

    /// Changes the given profile fields of the caller's account.
    #[tracing::instrument(skip_all, fields(user = %caller.user_id))]
    pub async fn update_profile(&self, caller: &Caller, update: ProfileUpdate) -> Result<user::Model, ServiceError> {
        // Everything is checked before anything is written.
        let field =
            |name, value: Option<String>, max| value.map(|value| domain::profile_field(name, &value, max)).transpose();
        let name = field("name", update.name, domain::MAX_NAME)?;
        let phone = field("phone", update.phone, domain::MAX_PHONE)?;
        let address = field("address", update.address, domain::MAX_ADDRESS)?;
        let current = users::get(&self.db, caller.user_id).await?;
        if name.is_none() && phone.is_none() && address.is_none() {
            return Ok(current);
        }
        let mut row = current.into_active_model();
        if let Some(name) = name {
            row.name = Set(name);
        }
        if let Some(phone) = phone {
            row.phone = Set(phone);
        }
        if let Some(address) = address {
            row.address = Set(address);
        }
        row.updated_at = Set(now());
        match row.update(&self.db).await {
            Ok(updated) => Ok(updated),
            // Deleted between the read and the write.
            Err(sea_orm::DbErr::RecordNotUpdated) => Err(ServiceError::not_found("no such user")),
            Err(error) => Err(error.into()),
        }
    }

    /// Replaces the caller's password after checking the current one; every other session ends.
    #[tracing::instrument(skip_all, fields(user = %caller.user_id))]
    pub async fn change_password(
        &self,
        caller: &Caller,
        client: &str,
        current: &str,
        new: &str,
    ) -> Result<(), ServiceError> {
        let new = Password::new(new)?;
        let account = users::get(&self.db, caller.user_id).await?;
        self.confirm_password(PasswordCheck::ChangePassword, &account, current, client)
            .await?;
        let hash = self.passwords.hash(new.as_str()).await?;
        let mut row = account.into_active_model();
        row.password_hash = Set(hash);
        row.updated_at = Set(now());
        row.update(&self.db).await?;
        self.sessions.end_all_of(caller.user_id, caller.session_id).await
    }

    /// Deletes the caller's account after checking the password: sessions end, then the row and
    /// everything that references it (wishlist, cart, sessions) go.
    #[tracing::instrument(skip_all, fields(user = %caller.user_id))]
    pub async fn delete_account(&self, caller: &Caller, client: &str, password: &str) -> Result<(), ServiceError> {
        let account = users::get(&self.db, caller.user_id).await?;
        self.confirm_password(PasswordCheck::DeleteAccount, &account, password, client)
            .await?;
        let txn = self.db.begin().await?;
        users::lock_admins(&txn).await?;
        let account = users::get(&txn, caller.user_id).await?;
        users::ensure_not_last_admin(&txn, &account).await?;
        // The access tokens are refused before the rows go (the sessions' rows go with the
        // account's), so no token outlives the account even if the cache fails afterwards.
        let sessions = self.sessions.live_sessions_of(&txn, caller.user_id, None).await?;
        self.sessions.refuse_access_tokens(&sessions).await?;
        user::Entity::delete_by_id(caller.user_id).exec(&txn).await?;
        txn.commit().await?;
        tracing::info!("account deleted");
        Ok(())
    }

    /// Creates the admin account `email` if no account has that address (several replicas
    /// starting together create it once). An existing account is left as it is.
    pub async fn ensure_admin(&self, email: &Email, password: &str) -> anyhow::Result<()> {
        if users::find_by_email(&self.db, email).await?.is_some() {
            return Ok(());
        }
        let password = Password::new(password).map_err(|error| anyhow::anyhow!("SHOP_ADMIN_PASSWORD: {error}"))?;
        let hash = self.passwords.hash(password.as_str()).await?;
        let now = now();
        let admin = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(email.as_str().to_owned()),
            password_hash: Set(hash),
            name: Set("Administrator".to_owned()),
            phone: Set("-".to_owned()),
            address: Set("-".to_owned()),
            role: Set(Role::Admin.as_str().to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = user::Entity::insert(admin)
            .on_conflict(OnConflict::column(user::Column::Email).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        if inserted > 0 {
            tracing::info!(%email, "admin account created");
        }
        Ok(())
    }
}
