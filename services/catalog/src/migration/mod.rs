//! The catalog service's schema migrations, applied at start (one replica at a time).

mod m001_products;
pub(crate) use m001_products::LISTED;
mod m002_stock;
mod m003_retention;

use sea_orm_migration::{MigrationTrait, MigratorTrait};
use shop_platform::outbox::{CreateMessagingTables, IndexInboxByAge};

/// Every migration of the catalog schema, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateMessagingTables),
            Box::new(m001_products::CreateProducts),
            Box::new(m002_stock::CreateReservations),
            Box::new(IndexInboxByAge),
            Box::new(m003_retention::IndexReleasesByAge),
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
                "m001_products",
                "m002_stock",
                "m001_platform_inbox_by_age",
                "m003_retention"
            ]
        );
    }
}
