//! Money after commit, and reservations that are asked again: the `payment_tasks` table (a
//! capture or refund requested in the transaction of its state change, carried out by the
//! payment worker afterwards), and two order columns: `stock_reserved_at` (the catalog reserved
//! the stock; the order waits for its capture) and `reserve_asked_at` (when the reconciler last
//! asked the catalog again).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `payment_tasks` and adds the reconciliation columns to `orders`.
#[derive(Debug, DeriveMigrationName)]
pub struct AddPaymentTasks;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    Status,
    PlacedAt,
    StockReservedAt,
    ReserveAskedAt,
}

#[derive(DeriveIden)]
enum PaymentTasks {
    Table,
    Id,
    OrderId,
    Kind,
    ItemId,
    Amount,
    Currency,
    State,
    Attempts,
    NextAttemptAt,
    LastError,
    ProviderReference,
    CreatedAt,
    CompletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for AddPaymentTasks {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            timestamp_with_time_zone_null(Orders::StockReservedAt),
            timestamp_with_time_zone_null(Orders::ReserveAskedAt),
        ] {
            manager
                .alter_table(Table::alter().table(Orders::Table).add_column(column).to_owned())
                .await?;
        }
        // The reconciler: pending orders by age.
        manager
            .create_index(
                Index::create()
                    .name("orders_by_status_and_age")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::PlacedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaymentTasks::Table)
                    .col(uuid(PaymentTasks::Id).primary_key())
                    .col(uuid(PaymentTasks::OrderId))
                    .col(string_len(PaymentTasks::Kind, 20))
                    .col(uuid_null(PaymentTasks::ItemId))
                    .col(big_integer(PaymentTasks::Amount))
                    .col(string_len(PaymentTasks::Currency, 3))
                    .col(string_len(PaymentTasks::State, 20))
                    .col(integer(PaymentTasks::Attempts))
                    .col(timestamp_with_time_zone(PaymentTasks::NextAttemptAt))
                    .col(text_null(PaymentTasks::LastError))
                    .col(string_len_null(PaymentTasks::ProviderReference, 200))
                    .col(timestamp_with_time_zone(PaymentTasks::CreatedAt))
                    .col(timestamp_with_time_zone_null(PaymentTasks::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PaymentTasks::Table, PaymentTasks::OrderId)
                            .to(Orders::Table, Orders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The payment worker: open tasks by when they are due.
        manager
            .create_index(
                Index::create()
                    .name("payment_tasks_due")
                    .table(PaymentTasks::Table)
                    .col(PaymentTasks::State)
                    .col(PaymentTasks::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("payment_tasks_by_order")
                    .table(PaymentTasks::Table)
                    .col(PaymentTasks::OrderId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PaymentTasks::Table).if_exists().to_owned())
            .await?;
        for column in [Orders::StockReservedAt, Orders::ReserveAskedAt] {
            manager
                .alter_table(Table::alter().table(Orders::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
