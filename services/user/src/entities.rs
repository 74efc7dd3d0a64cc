//! The user service's tables as sea-orm entities (created by [`crate::migration`]). Rows that
//! belong to a user reference it with `ON DELETE CASCADE`, so deleting an account removes its
//! sessions, wishlist and cart with it.

/// `users`: one row per account.
pub mod user {
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
}

/// `sessions`: one row per sign-in; ends on logout, refresh-token reuse, password change, role
/// change or account deletion.
pub mod session {
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
}

/// `refresh_tokens`: every refresh token ever issued, by digest, until its session is gone.
pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    /// A refresh token; only its SHA-256 digest is kept.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        /// Hex SHA-256 of the token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        /// The session it belongs to.
        pub session_id: Uuid,
        /// When it was issued.
        pub created_at: DateTimeUtc,
        /// When it stops working.
        pub expires_at: DateTimeUtc,
        /// When it was exchanged; a second use is a theft signal.
        pub used_at: Option<DateTimeUtc>,
    }

    /// No navigable relations are needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `wishlist_items`: products a user saved, one row per product.
pub mod wishlist_item {
    use sea_orm::entity::prelude::*;

    /// A wishlist item.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "wishlist_items")]
    pub struct Model {
        /// The item id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Whose wishlist.
        pub user_id: Uuid,
        /// The catalog product.
        pub product_id: Uuid,
        /// The wished quantity.
        pub quantity: i32,
        /// When it was added.
        pub created_at: DateTimeUtc,
    }

    /// No navigable relations are needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `cart_items`: the lines of a user's cart, one row per product.
pub mod cart_item {
    use sea_orm::entity::prelude::*;

    /// A cart line.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cart_items")]
    pub struct Model {
        /// The line id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Whose cart.
        pub user_id: Uuid,
        /// The catalog product.
        pub product_id: Uuid,
        /// How many to buy.
        pub quantity: i32,
        /// When the line was made.
        pub created_at: DateTimeUtc,
    }

    /// No navigable relations are needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
