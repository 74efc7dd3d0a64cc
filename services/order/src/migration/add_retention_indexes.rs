//! Indexes for the retention sweep (see `crate::retention`): each of its bounded batches finds
//! the oldest idempotency keys and finished payment tasks without reading the whole table.

use sea_orm_migration::prelude::*;

/// Indexes `idempotency_keys` by `created_at` and `claimed_until`, and `payment_tasks` by
/// `completed_at`.
#[derive(Debug, DeriveMigrationName)]
pub struct AddRetentionIndexes;

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    CreatedAt,
    ClaimedUntil,
}

#[derive(DeriveIden)]
enum PaymentTasks {
    Table,
    CompletedAt,
}

const INDEXES: [&str; 3] = [
    "idempotency_keys_by_age",
    "idempotency_keys_by_lease",
    "payment_tasks_by_completion",
];

#[async_trait::async_trait]
impl MigrationTrait for AddRetentionIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let indexes = [
            Index::create()
                .name(INDEXES[0])
                .table(IdempotencyKeys::Table)
                .col(IdempotencyKeys::CreatedAt)
                .if_not_exists()
                .to_owned(),
            Index::create()
                .name(INDEXES[1])
                .table(IdempotencyKeys::Table)
                .col(IdempotencyKeys::ClaimedUntil)
                .if_not_exists()
                .to_owned(),
            Index::create()
                .name(INDEXES[2])
                .table(PaymentTasks::Table)
                .col(PaymentTasks::CompletedAt)
                .if_not_exists()
                .to_owned(),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            IdempotencyKeys::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            PaymentTasks::Table.into_iden(),
        ];
        for (name, table) in INDEXES.into_iter().zip(tables) {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
