//! The order service's schema migrations, applied at start (one replica at a time).

mod add_payment_tasks;
mod add_retention_indexes;
mod create_order_tables;

use sea_orm_migration::{MigrationTrait, MigratorTrait};
use shop_platform::outbox::{CreateMessagingTables, IndexInboxByAge};

pub use add_payment_tasks::AddPaymentTasks;
pub use add_retention_indexes::AddRetentionIndexes;
pub use create_order_tables::CreateOrderTables;

/// Every migration of the order schema, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateMessagingTables),
            Box::new(CreateOrderTables),
            Box::new(AddPaymentTasks),
            Box::new(IndexInboxByAge),
            Box::new(AddRetentionIndexes),
        ]
    }
}

#[cfg(test)]
mod tests {
    /// What deployed databases recorded (see `shop_platform::db::migration_names`).
    #[test]
    fn migration_names_never_change() {
        assert_eq!(
            shop_platform::db::migration_names::<super::Migrator>(),
            [
                "m000_platform_messaging",
                "create_order_tables",
                "add_payment_tasks",
                "m001_platform_inbox_by_age",
                "add_retention_indexes"
            ]
        );
    }
}
