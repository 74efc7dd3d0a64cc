//! An index for the retention sweep (see `crate::retention`): applied releases by age.

use sea_orm_migration::prelude::*;

/// Indexes `releases` by `created_at`.
#[derive(Debug, DeriveMigrationName)]
pub struct IndexReleasesByAge;

#[derive(DeriveIden)]
enum Releases {
    Table,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for IndexReleasesByAge {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("releases_by_age")
                    .table(Releases::Table)
                    .col(Releases::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("releases_by_age").table(Releases::Table).to_owned())
            .await
    }
}
