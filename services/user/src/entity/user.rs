//! `users`: one row per account.

use sea_orm::entity::prelude::*;

/// An account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// The user id (UUIDv7: ordered by creation).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The verified address, lower case, unique.
    #[sea_orm(unique)]
    pub email: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// The display name.
    pub name: String,
    /// The phone number.
    pub phone: String,
    /// The shipping address.
    pub address: String,
    /// `customer`, `seller` or `admin`.
    pub role: String,
    /// When the account was made.
    pub created_at: DateTimeUtc,
    /// When it last changed.
    pub updated_at: DateTimeUtc,
}

/// No navigable relations are needed.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
