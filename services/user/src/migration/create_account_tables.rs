//! Accounts, sessions, refresh tokens, wishlists and carts: the user schema's first migration.

use sea_orm_migration::{prelude::*, schema::*};

/// Accounts, sessions, refresh tokens, wishlists and carts.
#[derive(Debug)]
pub(super) struct CreateAccountTables;

/// The name databases recorded when this migration lived in `migration.rs` (sea-orm derives
/// names from file names); it must never change.
impl MigrationName for CreateAccountTables {
    fn name(&self) -> &str {
        "migration"
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Name,
    Phone,
    Address,
    Role,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    CreatedAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    SessionId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum WishlistItems {
    Table,
}

#[derive(DeriveIden)]
enum CartItems {
    Table,
}

/// Columns shared by wishlist and cart rows.
#[derive(DeriveIden)]
enum Line {
    Id,
    UserId,
    ProductId,
    Quantity,
    CreatedAt,
}

/// A cascading reference to `users.id` from `table.column`.
fn owned_by_user(table: impl IntoIden + 'static, column: impl IntoIden + 'static) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

/// A wishlist or cart table: one row per (user, product).
fn line_table(table: impl IntoIden + Clone + 'static) -> TableCreateStatement {
    Table::create()
        .table(table.clone())
        .if_not_exists()
        .col(uuid(Line::Id).primary_key())
        .col(uuid(Line::UserId))
        .col(uuid(Line::ProductId))
        .col(integer(Line::Quantity))
        .col(timestamp_with_time_zone(Line::CreatedAt))
        .foreign_key(&mut owned_by_user(table, Line::UserId))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAccountTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(uuid(Users::Id).primary_key())
                    .col(string_uniq(Users::Email))
                    .col(string(Users::PasswordHash))
                    .col(string(Users::Name))
                    .col(string(Users::Phone))
                    .col(text(Users::Address))
                    .col(string(Users::Role))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // ListUsers pages newest first; counting admins reads by role.
        manager
            .create_index(
                Index::create()
                    .name("users_newest")
                    .table(Users::Table)
                    .col(Users::CreatedAt)
                    .col(Users::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_role")
                    .table(Users::Table)
                    .col(Users::Role)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(uuid(Sessions::Id).primary_key())
                    .col(uuid(Sessions::UserId))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone_null(Sessions::EndedAt))
                    .foreign_key(&mut owned_by_user(Sessions::Table, Sessions::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sessions_user")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .if_not_exists()
                    .col(string(RefreshTokens::TokenHash).primary_key())
                    .col(uuid(RefreshTokens::SessionId))
                    .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refresh_tokens_session")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::SessionId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        for (table, name) in [
            (WishlistItems::Table.into_iden(), "wishlist_items_user_product"),
            (CartItems::Table.into_iden(), "cart_items_user_product"),
        ] {
            manager.create_table(line_table(table.clone())).await?;
            // One row per product and user: re-adding a product finds the existing row.
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(table)
                        .col(Line::UserId)
                        .col(Line::ProductId)
                        .unique()
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CartItems::Table.into_iden(),
            WishlistItems::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
