//! The `products` table and the indexes that keep listing fast at a million rows.
//!
//! - `products_listed_newest`: the keyset order of ListProducts, `(created_at, id)` descending,
//!   partial on listed rows (visible, not deleted) so hidden and deleted rows cost nothing.
//! - `products_seller_newest`: the same order within one seller (the `seller_id` filter).
//! - `products_listed_price`: price-range filters that select few rows.
//! - on PostgreSQL, `pg_trgm` GIN indexes on name and description, which serve the
//!   case-insensitive substring filter (`ILIKE '%…%'`) that no b-tree can.
//!
//! `stock` is deliberately in no index: the reservation worker updates it constantly, and an
//! update that touches no indexed column stays a HOT update (no index writes at all).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `products`.
#[derive(Debug, DeriveMigrationName)]
pub struct CreateProducts;

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    SellerId,
    Name,
    Description,
    PriceAmount,
    Currency,
    Stock,
    Visible,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

/// The predicate of "listed" products, written the same way in the partial indexes and in the
/// queries, so that both PostgreSQL and SQLite can match them.
pub(crate) const LISTED: &str = "visible AND deleted_at IS NULL";

#[async_trait::async_trait]
impl MigrationTrait for CreateProducts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .if_not_exists()
                    .col(uuid(Products::Id).primary_key())
                    .col(uuid(Products::SellerId))
                    .col(string_len(Products::Name, 200))
                    .col(text(Products::Description))
                    .col(big_integer(Products::PriceAmount).check(Expr::col(Products::PriceAmount).gte(0)))
                    .col(string_len(Products::Currency, 3))
                    // The last line of defence against overselling: no code path can store a
                    // negative stock, whatever it computes.
                    .col(big_integer(Products::Stock).check(Expr::col(Products::Stock).gte(0)))
                    .col(boolean(Products::Visible))
                    .col(timestamp_with_time_zone(Products::CreatedAt))
                    .col(timestamp_with_time_zone(Products::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Products::DeletedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for sql in [
            format!(
                "CREATE INDEX IF NOT EXISTS products_listed_newest ON products (created_at DESC, id DESC) WHERE {LISTED}"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS products_seller_newest ON products (seller_id, created_at DESC, id DESC) WHERE {LISTED}"
            ),
            format!("CREATE INDEX IF NOT EXISTS products_listed_price ON products (price_amount) WHERE {LISTED}"),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let trgm = trigram_schema(db).await?;
            for column in ["name", "description"] {
                db.execute_unprepared(&format!(
                    "CREATE INDEX IF NOT EXISTS products_{column}_trgm ON products \
                     USING gin ({column} \"{trgm}\".gin_trgm_ops) WHERE {LISTED}"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Products::Table).if_exists().to_owned())
            .await
    }
}

/// Makes sure `pg_trgm` is installed and returns the schema holding it. An extension exists once
/// per database: another service may have installed it in its own schema first, so its operator
/// class is named with that schema rather than found through `search_path`.
async fn trigram_schema(db: &SchemaManagerConnection<'_>) -> Result<String, DbErr> {
    if let Err(error) = db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm").await {
        // Two services migrating at once both try to create it; one loses the race harmlessly.
        let message = error.to_string();
        if !(message.contains("duplicate key") || message.contains("already exists")) {
            return Err(error);
        }
    }
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'pg_trgm'",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("pg_trgm is not installed".into()))?;
    let schema: String = row.try_get("", "schema")?;
    if schema.contains('"') {
        return Err(DbErr::Custom(format!("unexpected pg_trgm schema {schema:?}")));
    }
    Ok(schema)
}
