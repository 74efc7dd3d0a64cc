//! The reservation worker's tables: `reservations` (one row per order, keyed by order id, with
//! the answer given), `reservation_lines` (what each reserved order holds, and how much of it
//! was given back) and `releases` (each applied release, keyed by order id and release id).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `reservations`, `reservation_lines` and `releases`.
#[derive(Debug, DeriveMigrationName)]
pub struct CreateReservations;

#[derive(DeriveIden)]
enum Reservations {
    Table,
    OrderId,
    Status,
    Shortages,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ReservationLines {
    Table,
    OrderId,
    ProductId,
    Quantity,
    Released,
}

#[derive(DeriveIden)]
enum Releases {
    Table,
    OrderId,
    ReleaseId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateReservations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .if_not_exists()
                    .col(uuid(Reservations::OrderId).primary_key())
                    .col(string_len(Reservations::Status, 16))
                    .col(text_null(Reservations::Shortages))
                    .col(timestamp_with_time_zone(Reservations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReservationLines::Table)
                    .if_not_exists()
                    .col(uuid(ReservationLines::OrderId))
                    .col(uuid(ReservationLines::ProductId))
                    .col(big_integer(ReservationLines::Quantity).check(Expr::col(ReservationLines::Quantity).gt(0)))
                    // Never more given back than was taken, never less than nothing.
                    .col(
                        big_integer(ReservationLines::Released).check(
                            Expr::col(ReservationLines::Released)
                                .gte(0)
                                .and(Expr::col(ReservationLines::Released).lte(Expr::col(ReservationLines::Quantity))),
                        ),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReservationLines::OrderId)
                            .col(ReservationLines::ProductId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ReservationLines::Table, ReservationLines::OrderId)
                            .to(Reservations::Table, Reservations::OrderId),
                    )
                    .to_owned(),
            )
            .await?;
        // Operators' question "what is reserved of this product?" and the invariant checks.
        manager
            .create_index(
                Index::create()
                    .name("reservation_lines_product")
                    .table(ReservationLines::Table)
                    .col(ReservationLines::ProductId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Releases::Table)
                    .if_not_exists()
                    .col(uuid(Releases::OrderId))
                    .col(uuid(Releases::ReleaseId))
                    .col(timestamp_with_time_zone(Releases::CreatedAt))
                    .primary_key(Index::create().col(Releases::OrderId).col(Releases::ReleaseId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Releases::Table.into_iden(),
            ReservationLines::Table.into_iden(),
            Reservations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
