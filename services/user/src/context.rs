//! The parts every operation of the user service works with, assembled once from the settings
//! and shared (cheaply cloned) by the gRPC adapters.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use shop_platform::{
    cache::Cache,
    config::{ExposeSecret as _, SecretString},
};

use crate::{
    catalog::Catalog,
    config::UserConfig,
    domain::Email,
    mail::Mailer,
    passwords::Passwords,
    sessions::Sessions,
    store::Store,
    throttle::{LoginThrottle, ThrottleSettings},
    tokens::Tokens,
    verification::{Verification, VerificationSettings},
};

/// The user service's state.
#[derive(Clone, Debug)]
pub struct Context {
    /// The service's database.
    pub db: DatabaseConnection,
    /// Password hashing.
    pub passwords: Passwords,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Verification codes and tokens.
    pub verification: Verification,
    /// Sessions and tokens.
    pub sessions: Sessions,
    /// Failed password check counters.
    pub throttle: LoginThrottle,
    /// Product details.
    pub catalog: Catalog,
}

impl Context {
    /// Assembles the parts; the catalog client is given so the caller chooses how to reach it.
    pub async fn new(
        db: DatabaseConnection,
        cache: Arc<dyn Cache>,
        catalog: Catalog,
        config: &UserConfig,
    ) -> anyhow::Result<Self> {
        let store = Store::new(cache);
        let tokens = Arc::new(Tokens::new(
            config.signing_keys.as_ref().map(|keys| keys.expose_secret()),
            config.access_token_ttl,
        )?);
        let verification = Verification::new(
            store.clone(),
            VerificationSettings {
                code_ttl: config.code_ttl,
                max_attempts: config.code_max_attempts,
                token_ttl: config.verification_token_ttl,
                resend_interval: config.resend_interval,
                address_hourly_limit: config.address_hourly_limit,
                client_hourly_limit: config.client_hourly_limit,
            },
        );
        Ok(Self {
            passwords: Passwords::new(config.password_hash_memory_mib).await?,
            mailer: Mailer::new(config.smtp_url.expose_secret(), &config.mail_from)?,
            sessions: Sessions::new(db.clone(), store.clone(), tokens, config.refresh_token_ttl),
            throttle: LoginThrottle::new(
                store,
                ThrottleSettings {
                    client_limit: config.login_failure_limit,
                    window: config.login_failure_window,
                    max_backoff: config.login_max_backoff,
                    account_limit: config.login_account_failure_limit,
                    account_delay: config.login_account_delay,
                },
            ),
            verification,
            catalog,
            db,
        })
    }

    /// The admin account from `SHOP_ADMIN_EMAIL` / `SHOP_ADMIN_PASSWORD`, if configured.
    pub async fn bootstrap(&self, admin: Option<&(Email, SecretString)>) -> anyhow::Result<()> {
        if let Some((email, password)) = admin {
            self.ensure_admin(email, password.expose_secret()).await?;
        }
        Ok(())
    }
}
