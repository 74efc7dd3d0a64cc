//! The user service's schema migrations, applied at start (one replica at a time).

use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Every migration of the user schema, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
