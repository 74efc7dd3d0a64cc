//! The user service's schema migrations, applied at start (one replica at a time). The same
//! migrations run on PostgreSQL (a schema of the shared database) and on SQLite (the
//! one-process run).

mod create_account_tables;

use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Every migration of the user schema, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(create_account_tables::CreateAccountTables)]
    }
}

#[cfg(test)]
mod tests {
    /// What deployed databases recorded (see `shop_platform::db::migration_names`).
    #[test]
    fn migration_names_never_change() {
        assert_eq!(shop_platform::db::migration_names::<super::Migrator>(), ["migration"]);
    }
}
