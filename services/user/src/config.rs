//! The user service's own settings, read once from the environment and validated at start.

use std::time::Duration;

use shop_platform::{
    config::{ConfigError, Env, ExposeSecret, SecretString},
    grpc::client::Target,
    retention,
};
use shop_proto::queues::OrderQueues;

use crate::domain::{Email, Password};

/// Settings of the user service, from the environment. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct UserConfig {
    /// Where verification mails go: `smtp://host:port` (plain, for local sinks),
    /// `smtps://user:pass@host:port` (TLS), `smtp://user:pass@host:port?tls=starttls`, or
    /// `log://` (written to the log). `SMTP_URL` [log://].
    pub smtp_url: SecretString,
    /// The sender of the mails. `SHOP_MAIL_FROM` [shop <no-reply@shop.localhost>].
    pub mail_from: String,
    /// The admin account created at start if absent (`SHOP_ADMIN_EMAIL`, `SHOP_ADMIN_PASSWORD`).
    pub admin: Option<(Email, SecretString)>,
    /// The catalog service, for product details in wishlists and carts.
    /// `SHOP_CATALOG_TARGET` [http://127.0.0.1:50052]; `dns://catalog.shop.svc.cluster.local:50051`
    /// in a cluster.
    pub catalog_target: Target,
    /// Access-token signing keys: `kid=<base64url 32-byte Ed25519 seed>` entries separated by
    /// commas, the current key first; the others are retired keys still published for
    /// verification. `SHOP_JWT_SIGNING_KEYS` [none: a key is generated at start, with a warning,
    /// and tokens do not survive a restart nor verify across replicas; the one-process `shop`
    /// binary fills this in from the key it keeps in its data directory, see `key_file`].
    pub signing_keys: Option<SecretString>,
    /// Lifetime of access tokens. `SHOP_ACCESS_TOKEN_TTL` [15m].
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (each refresh issues a new one). `SHOP_REFRESH_TOKEN_TTL` [30d].
    pub refresh_token_ttl: Duration,
    /// Lifetime of an email verification code. `SHOP_VERIFICATION_CODE_TTL` [5m].
    pub code_ttl: Duration,
    /// Wrong attempts that burn a code. `SHOP_VERIFICATION_MAX_ATTEMPTS` [5].
    pub code_max_attempts: u32,
    /// Lifetime of the token that confirms an address for sign-up.
    /// `SHOP_VERIFICATION_TOKEN_TTL` [15m].
    pub verification_token_ttl: Duration,
    /// Shortest gap between two codes sent to one address. `SHOP_VERIFICATION_RESEND_INTERVAL` [60s].
    pub resend_interval: Duration,
    /// Most mails sent to one address in an hour. `SHOP_VERIFICATION_HOURLY_LIMIT` [5].
    pub address_hourly_limit: u32,
    /// Most verification requests from one client in an hour.
    /// `SHOP_VERIFICATION_CLIENT_HOURLY_LIMIT` [30].
    pub client_hourly_limit: u32,
    /// Failed password checks on one account from one client before that client is locked out
    /// (sign-in, password change and deletion each counted apart). `SHOP_LOGIN_FAILURE_LIMIT` [5].
    pub login_failure_limit: u32,
    /// How long failures are counted, and a client's first lockout.
    /// `SHOP_LOGIN_FAILURE_WINDOW` [15m].
    pub login_failure_window: Duration,
    /// The longest lockout: each lockout of a client doubles the next one, up to this.
    /// `SHOP_LOGIN_MAX_BACKOFF` [24h].
    pub login_max_backoff: Duration,
    /// Failed checks on one account from all clients in a window before the account is slowed
    /// (clients that failed on it are refused, others wait). `SHOP_LOGIN_ACCOUNT_FAILURE_LIMIT` [100].
    pub login_account_failure_limit: u32,
    /// How long a client without failures waits before its check on a slowed account.
    /// `SHOP_LOGIN_ACCOUNT_DELAY` [1s].
    pub login_account_delay: Duration,
    /// Memory password hashing may hold at once, in MiB: each argon2id hash holds 19, so this
    /// bounds how many run together (at least one); checks beyond wait up to 2 s, then are
    /// refused with UNAVAILABLE. `SHOP_PASSWORD_HASH_MEMORY_MIB` [128: six at once].
    pub password_hash_memory_mib: u32,
    /// The queue the order service announces orders from the cart on, whose lines then leave
    /// the cart. `SHOP_ORDER_PLACED_QUEUE` [orders.placed], as the order service reads it.
    pub queues: OrderQueues,
    /// The most messages the dead-letter queue of that queue holds.
    /// `SHOP_DEAD_LETTER_MAX_LENGTH` [100000].
    pub dead_letter_max_length: u32,
}

impl UserConfig {
    /// Reads and validates the settings.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let admin = match (env.var("SHOP_ADMIN_EMAIL"), env.secret("SHOP_ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => {
                let email =
                    Email::parse(&email).map_err(|error| ConfigError::new("SHOP_ADMIN_EMAIL", error.to_string()))?;
                Password::check_rule(password.expose_secret())
                    .map_err(|error| ConfigError::new("SHOP_ADMIN_PASSWORD", error.to_string()))?;
                Some((email, password))
            }
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
        let catalog_target = env.var("SHOP_CATALOG_TARGET");
        let catalog_target = Target::parse(catalog_target.as_deref().unwrap_or("http://127.0.0.1:50052"))
            .map_err(|error| ConfigError::new("SHOP_CATALOG_TARGET", error.to_string()))?;
        let signing_keys = env.secret("SHOP_JWT_SIGNING_KEYS");
        if let Some(keys) = &signing_keys {
            crate::tokens::parse_signing_keys(keys.expose_secret())
                .map_err(|reason| ConfigError::new("SHOP_JWT_SIGNING_KEYS", reason))?;
        }
        let config = Self {
            smtp_url: SecretString::from(env.url_or("SMTP_URL", "log://", &["smtp", "smtps", "log"])?),
            mail_from: env
                .var("SHOP_MAIL_FROM")
                .unwrap_or_else(|| "shop <no-reply@shop.localhost>".to_owned()),
            admin,
            catalog_target,
            signing_keys,
            access_token_ttl: env.duration_or("SHOP_ACCESS_TOKEN_TTL", Duration::from_secs(15 * 60))?,
            refresh_token_ttl: env.duration_or("SHOP_REFRESH_TOKEN_TTL", Duration::from_secs(30 * 86_400))?,
            code_ttl: env.duration_or("SHOP_VERIFICATION_CODE_TTL", Duration::from_secs(5 * 60))?,
            code_max_attempts: env.parse_or("SHOP_VERIFICATION_MAX_ATTEMPTS", 5)?,
            verification_token_ttl: env.duration_or("SHOP_VERIFICATION_TOKEN_TTL", Duration::from_secs(15 * 60))?,
            resend_interval: env.duration_or("SHOP_VERIFICATION_RESEND_INTERVAL", Duration::from_secs(60))?,
            address_hourly_limit: env.parse_or("SHOP_VERIFICATION_HOURLY_LIMIT", 5)?,
            client_hourly_limit: env.parse_or("SHOP_VERIFICATION_CLIENT_HOURLY_LIMIT", 30)?,
            login_failure_limit: env.parse_or("SHOP_LOGIN_FAILURE_LIMIT", 5)?,
            login_failure_window: env.duration_or("SHOP_LOGIN_FAILURE_WINDOW", Duration::from_secs(15 * 60))?,
            login_max_backoff: env.duration_or("SHOP_LOGIN_MAX_BACKOFF", Duration::from_secs(86_400))?,
            login_account_failure_limit: env.parse_or("SHOP_LOGIN_ACCOUNT_FAILURE_LIMIT", 100)?,
            login_account_delay: env.duration_or("SHOP_LOGIN_ACCOUNT_DELAY", Duration::from_secs(1))?,
            password_hash_memory_mib: env.parse_or("SHOP_PASSWORD_HASH_MEMORY_MIB", 128)?,
            queues: OrderQueues::from_vars(|key| env.var(key))
                .map_err(|bad| ConfigError::new(bad.variable, bad.reason))?,
            dead_letter_max_length: retention::dead_letter_max_length(env)?,
        };
        crate::mail::Mailer::check_settings(config.smtp_url.expose_secret(), &config.mail_from)
            .map_err(|reason| ConfigError::new("SMTP_URL", reason))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses values that would make the service unusable or unsafe.
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("SHOP_ACCESS_TOKEN_TTL", self.access_token_ttl),
            ("SHOP_REFRESH_TOKEN_TTL", self.refresh_token_ttl),
            ("SHOP_VERIFICATION_CODE_TTL", self.code_ttl),
            ("SHOP_VERIFICATION_TOKEN_TTL", self.verification_token_ttl),
            ("SHOP_VERIFICATION_RESEND_INTERVAL", self.resend_interval),
            ("SHOP_LOGIN_FAILURE_WINDOW", self.login_failure_window),
            ("SHOP_LOGIN_MAX_BACKOFF", self.login_max_backoff),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be longer than zero"));
            }
        }
        // Access tokens outliving their refresh token would make revocation by session moot.
        if self.access_token_ttl > self.refresh_token_ttl {
            return Err(ConfigError::new(
                "SHOP_ACCESS_TOKEN_TTL",
                "must not be longer than SHOP_REFRESH_TOKEN_TTL",
            ));
        }
        let counts = [
            ("SHOP_VERIFICATION_MAX_ATTEMPTS", self.code_max_attempts),
            ("SHOP_VERIFICATION_HOURLY_LIMIT", self.address_hourly_limit),
            ("SHOP_VERIFICATION_CLIENT_HOURLY_LIMIT", self.client_hourly_limit),
            ("SHOP_LOGIN_FAILURE_LIMIT", self.login_failure_limit),
            ("SHOP_LOGIN_ACCOUNT_FAILURE_LIMIT", self.login_account_failure_limit),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.login_max_backoff < self.login_failure_window {
            return Err(ConfigError::new(
                "SHOP_LOGIN_MAX_BACKOFF",
                "must not be shorter than SHOP_LOGIN_FAILURE_WINDOW",
            ));
        }
        // The ceiling slows whole accounts: it only makes sense well above one client's limit.
        if self.login_account_failure_limit < self.login_failure_limit {
            return Err(ConfigError::new(
                "SHOP_LOGIN_ACCOUNT_FAILURE_LIMIT",
                "must not be lower than SHOP_LOGIN_FAILURE_LIMIT",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use shop_platform::config::MapEnv;

    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let config = UserConfig::from_env(&MapEnv::default()).ok();
        let summary = config.map(|c| {
            (
                c.smtp_url.expose_secret().to_owned(),
                c.catalog_target.to_string(),
                c.access_token_ttl,
                c.code_ttl,
                c.code_max_attempts,
                c.resend_interval,
                c.signing_keys.is_none(),
                c.queues.placed,
            )
        });
        assert_eq!(
            summary,
            Some((
                "log://".to_owned(),
                "static://127.0.0.1:50052".to_owned(),
                Duration::from_secs(900),
                Duration::from_secs(300),
                5,
                Duration::from_secs(60),
                true,
                "orders.placed".to_owned(),
            ))
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("SHOP_ADMIN_EMAIL", "not-an-email"),
            ("SHOP_CATALOG_TARGET", "ftp://x:1"),
            ("SHOP_JWT_SIGNING_KEYS", "k1=short"),
            ("SHOP_ACCESS_TOKEN_TTL", "0s"),
            ("SHOP_VERIFICATION_MAX_ATTEMPTS", "0"),
            ("SHOP_LOGIN_MAX_BACKOFF", "1m"),
            ("SHOP_LOGIN_ACCOUNT_FAILURE_LIMIT", "2"),
            ("SMTP_URL", "smtp://"),
            ("SHOP_ORDER_PLACED_QUEUE", "orders placed"),
            ("SHOP_DEAD_LETTER_MAX_LENGTH", "0"),
        ];
        for (key, value) in cases {
            let mut pairs = vec![(key, value)];
            if key == "SHOP_ADMIN_EMAIL" {
                pairs.push(("SHOP_ADMIN_PASSWORD", "Str0ng-password"));
            }
            let error = UserConfig::from_env(&MapEnv::from_pairs(pairs)).err().map(|e| e.key);
            assert_eq!(error.as_deref(), Some(key), "{key}={value}");
        }
    }

    #[test]
    fn a_weak_admin_password_is_refused_at_start() {
        let env = MapEnv::from_pairs([
            ("SHOP_ADMIN_EMAIL", "root@example.com"),
            ("SHOP_ADMIN_PASSWORD", "admin"),
        ]);
        let error = UserConfig::from_env(&env).err().map(|e| e.key);
        assert_eq!(error.as_deref(), Some("SHOP_ADMIN_PASSWORD"));
    }
}
