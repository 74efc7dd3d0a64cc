//! The tables every service that publishes or consumes messages needs: `outbox` (messages to
//! publish) and `inbox` (ids of messages already applied). Services list
//! [`CreateMessagingTables`], then [`IndexInboxByAge`], in their own migrator.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `outbox` and `inbox`.
#[derive(Debug)]
pub struct CreateMessagingTables;

impl MigrationName for CreateMessagingTables {
    // Named explicitly: the derived name would be this module's, `migration`, which says nothing
    // in a service's migration history.
    fn name(&self) -> &str {
        "m000_platform_messaging"
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Seq,
    Id,
    Destination,
    Kind,
    Payload,
    Headers,
    CreatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    MessageId,
    ProcessedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMessagingTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Outbox::Seq))
                    .col(uuid_uniq(Outbox::Id))
                    .col(string(Outbox::Destination))
                    .col(string(Outbox::Kind))
                    .col(blob(Outbox::Payload))
                    .col(text(Outbox::Headers))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::PublishedAt))
                    .to_owned(),
            )
            .await?;
        // The relay's scan: unsent rows in order. Sent rows are skipped by the index prefix.
        manager
            .create_index(
                Index::create()
                    .name("outbox_unsent")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Inbox::Table)
                    .if_not_exists()
                    .col(string(Inbox::MessageId).primary_key())
                    .col(timestamp_with_time_zone(Inbox::ProcessedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Inbox::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Outbox::Table).if_exists().to_owned())
            .await
    }
}

/// Indexes `inbox` by `processed_at`, for the retention sweep (see [`crate::retention`]): each
/// of its bounded batches then finds the oldest ids without reading the table. A migration of
/// its own, so deployments created before it get the index too.
#[derive(Debug)]
pub struct IndexInboxByAge;

impl MigrationName for IndexInboxByAge {
    fn name(&self) -> &str {
        "m001_platform_inbox_by_age"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexInboxByAge {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("inbox_by_age")
                    .table(Inbox::Table)
                    .col(Inbox::ProcessedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("inbox_by_age").table(Inbox::Table).to_owned())
            .await
    }
}
