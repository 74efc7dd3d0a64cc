//! Creates the order tables: orders, their items, payments, refunds, stock releases and
//! PlaceOrder's idempotency keys. Portable: the same statements on PostgreSQL and SQLite.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates the order tables and their indexes.
#[derive(Debug, DeriveMigrationName)]
pub struct CreateOrderTables;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    Status,
    StatusReason,
    Currency,
    Total,
    Shortages,
    PlacedAt,
    PaidAt,
    ShippedAt,
    DeliveredAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    Id,
    OrderId,
    Position,
    ProductId,
    Name,
    UnitPrice,
    Quantity,
    Status,
    CartItemId,
    ShippedAt,
    DeliveredAt,
    ReturnedAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    OrderId,
    Status,
    Amount,
    Currency,
    Refunded,
    ProviderReference,
    CapturedAt,
    DeclinedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    OrderId,
    ItemId,
    Amount,
    ProviderReference,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StockReleases {
    Table,
    OrderId,
    ReleaseId,
    Reason,
    RequestedAt,
    ReleasedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    UserId,
    Key,
    RequestHash,
    OrderId,
    ClaimedUntil,
    CreatedAt,
}

/// `<table>.order_id` references `orders.id`; an order's rows go with it.
fn order_fk(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Orders::Table, Orders::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrderTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(uuid(Orders::Id).primary_key())
                    .col(uuid(Orders::UserId))
                    .col(string_len(Orders::Status, 20))
                    .col(text_null(Orders::StatusReason))
                    .col(string_len(Orders::Currency, 3))
                    .col(big_integer(Orders::Total))
                    .col(text_null(Orders::Shortages))
                    .col(timestamp_with_time_zone(Orders::PlacedAt))
                    .col(timestamp_with_time_zone_null(Orders::PaidAt))
                    .col(timestamp_with_time_zone_null(Orders::ShippedAt))
                    .col(timestamp_with_time_zone_null(Orders::DeliveredAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // ListOrders: a user's orders, and everyone's, newest first.
        index(
            manager,
            "orders_by_user",
            Orders::Table,
            [Orders::UserId, Orders::PlacedAt, Orders::Id],
        )
        .await?;
        index(manager, "orders_by_time", Orders::Table, [Orders::PlacedAt, Orders::Id]).await?;
        // The shipment scheduler: orders of one status by the milestone it waits from.
        index(
            manager,
            "orders_paid_due",
            Orders::Table,
            [Orders::Status, Orders::PaidAt],
        )
        .await?;
        index(
            manager,
            "orders_shipped_due",
            Orders::Table,
            [Orders::Status, Orders::ShippedAt],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(uuid(OrderItems::Id).primary_key())
                    .col(uuid(OrderItems::OrderId))
                    .col(integer(OrderItems::Position))
                    .col(uuid(OrderItems::ProductId))
                    .col(string_len(OrderItems::Name, 400))
                    .col(big_integer(OrderItems::UnitPrice))
                    .col(big_integer(OrderItems::Quantity))
                    .col(string_len(OrderItems::Status, 20))
                    .col(uuid_null(OrderItems::CartItemId))
                    .col(timestamp_with_time_zone_null(OrderItems::ShippedAt))
                    .col(timestamp_with_time_zone_null(OrderItems::DeliveredAt))
                    .col(timestamp_with_time_zone_null(OrderItems::ReturnedAt))
                    .foreign_key(&mut order_fk(OrderItems::Table, OrderItems::OrderId))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "order_items_by_order",
            OrderItems::Table,
            [OrderItems::OrderId, OrderItems::Position],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(uuid(Payments::OrderId).primary_key())
                    .col(string_len(Payments::Status, 20))
                    .col(big_integer(Payments::Amount))
                    .col(string_len(Payments::Currency, 3))
                    .col(big_integer(Payments::Refunded))
                    .col(string_len_null(Payments::ProviderReference, 200))
                    .col(timestamp_with_time_zone_null(Payments::CapturedAt))
                    .col(timestamp_with_time_zone_null(Payments::DeclinedAt))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .col(timestamp_with_time_zone(Payments::UpdatedAt))
                    .foreign_key(&mut order_fk(Payments::Table, Payments::OrderId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(uuid(Refunds::Id).primary_key())
                    .col(uuid(Refunds::OrderId))
                    .col(uuid_null(Refunds::ItemId))
                    .col(big_integer(Refunds::Amount))
                    .col(string_len(Refunds::ProviderReference, 200))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .foreign_key(&mut order_fk(Refunds::Table, Refunds::OrderId))
                    .to_owned(),
            )
            .await?;
        index(manager, "refunds_by_order", Refunds::Table, [Refunds::OrderId]).await?;

        manager
            .create_table(
                Table::create()
                    .table(StockReleases::Table)
                    .col(uuid(StockReleases::OrderId))
                    .col(uuid(StockReleases::ReleaseId))
                    .col(string_len(StockReleases::Reason, 20))
                    .col(timestamp_with_time_zone(StockReleases::RequestedAt))
                    .col(timestamp_with_time_zone_null(StockReleases::ReleasedAt))
                    .primary_key(
                        Index::create()
                            .col(StockReleases::OrderId)
                            .col(StockReleases::ReleaseId),
                    )
                    .foreign_key(&mut order_fk(StockReleases::Table, StockReleases::OrderId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(uuid(IdempotencyKeys::UserId))
                    .col(string_len(IdempotencyKeys::Key, 255))
                    .col(string_len(IdempotencyKeys::RequestHash, 64))
                    .col(uuid_null(IdempotencyKeys::OrderId))
                    .col(timestamp_with_time_zone(IdempotencyKeys::ClaimedUntil))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .primary_key(Index::create().col(IdempotencyKeys::UserId).col(IdempotencyKeys::Key))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            StockReleases::Table.into_iden(),
            Refunds::Table.into_iden(),
            Payments::Table.into_iden(),
            OrderItems::Table.into_iden(),
            Orders::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

async fn index<T, C>(manager: &SchemaManager<'_>, name: &str, table: T, columns: C) -> Result<(), DbErr>
where
    T: IntoIden,
    C: IntoIterator,
    C::Item: IntoIndexColumn,
{
    let mut statement = Index::create();
    statement.name(name).table(table);
    for column in columns {
        statement.col(column);
    }
    manager.create_index(statement.to_owned()).await
}
