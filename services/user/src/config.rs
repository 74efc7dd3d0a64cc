//! The user service's own settings.

use shop_platform::config::{ConfigError, Env, SecretString};

/// Settings of the user service, from the environment.
#[derive(Clone, Debug)]
pub struct UserConfig {
    /// Where verification mails go: `smtp://host:port` (plain, for local sinks),
    /// `smtps://user:pass@host:port`, `smtp://…?tls=starttls`, or `log://` (written to the log).
    /// `SMTP_URL` [log://].
    pub smtp_url: String,
    /// The admin account created at start if absent (`SHOP_ADMIN_EMAIL`, `SHOP_ADMIN_PASSWORD`).
    pub admin: Option<(String, SecretString)>,
}

impl UserConfig {
    /// Reads and validates the settings.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let admin = match (env.var("SHOP_ADMIN_EMAIL"), env.secret("SHOP_ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => Some((email, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "SHOP_ADMIN_PASSWORD",
                    "must be set with SHOP_ADMIN_EMAIL",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "SHOP_ADMIN_EMAIL",
                    "must be set with SHOP_ADMIN_PASSWORD",
                ));
            }
        };
        Ok(Self {
            smtp_url: env.url_or("SMTP_URL", "log://", &["smtp", "smtps", "log"])?,
            admin,
        })
    }
}
