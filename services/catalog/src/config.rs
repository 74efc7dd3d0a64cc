//! The catalog service's own settings.

use shop_platform::config::{ConfigError, Env};

/// Settings of the catalog service, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogConfig {}

impl CatalogConfig {
    /// Reads and validates the settings.
    pub fn from_env(_env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {})
    }
}
