//! Reads and writes of the `users` table shared by the account operations, including the guard
//! that keeps at least one admin.

use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    SqlErr,
};
use shop_platform::grpc::{error::ServiceError, identity::Role};
use uuid::Uuid;

use crate::{domain::Email, entity::user};

/// The account with address `email`.
pub async fn find_by_email(conn: &impl ConnectionTrait, email: &Email) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(conn)
        .await
}

/// The account `id`, or NOT_FOUND.
pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<user::Model, ServiceError> {
    user::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such user"))
}

/// The stored role of an account.
pub fn role(user: &user::Model) -> Result<Role, ServiceError> {
    user.role
        .parse()
        .map_err(|error: String| ServiceError::Unexpected(anyhow::anyhow!("user {}: {error}", user.id)))
}

/// Whether `error` is the unique violation of an already registered address.
pub fn is_duplicate(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The ALREADY_EXISTS answer for a taken address.
pub fn email_taken() -> ServiceError {
    ServiceError::AlreadyExists {
        code: "email_taken",
        message: "this email address already has an account".to_owned(),
    }
}

/// Serialises changes that could remove the last admin, inside the caller's transaction. On
/// PostgreSQL a transaction-scoped advisory lock does it; SQLite already runs one writing
/// transaction at a time.
pub async fn lock_admins(txn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('shop.user.admins'))")
            .await?;
    }
    Ok(())
}

/// FAILED_PRECONDITION `last_admin` if `user` is the only admin (call under [`lock_admins`]).
pub async fn ensure_not_last_admin(txn: &impl ConnectionTrait, user: &user::Model) -> Result<(), ServiceError> {
    if user.role != Role::Admin.as_str() {
        return Ok(());
    }
    let admins = user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin.as_str()))
        .count(txn)
        .await?;
    if admins <= 1 {
        return Err(ServiceError::FailedPrecondition {
            code: "last_admin",
            message: "this is the only admin account; make another admin first".to_owned(),
        });
    }
    Ok(())
}
