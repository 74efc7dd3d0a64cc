//! Email verification codes and tokens, kept in the cache with their TTLs.
//!
//! A code is 6 digits from a CSPRNG, stored as a salted SHA-256 digest under the address (a new
//! code replaces the old one and resets its attempts). Every attempt is counted BEFORE the
//! comparison, so concurrent guesses cannot exceed the limit; the last allowed wrong attempt
//! burns the code. A right code is taken with GETDEL, so it works once, and exchanged for a
//! verification token (256 random bits, stored by digest with the address) that sign-up consumes.
//!
//! Sending is limited per client (a fixed hourly window), per address (one code per resend
//! interval and a fixed hourly cap), counted the same way whether or not the address has an
//! account so that the limits reveal nothing either.

use std::time::Duration;

use shop_platform::grpc::error::ServiceError;

use crate::{
    domain::Email,
    secrets,
    store::{self, Store},
};

const HOUR: Duration = Duration::from_secs(3_600);
const SALT_LEN: usize = 16;

/// Limits and lifetimes of verification.
#[derive(Clone, Debug)]
pub struct VerificationSettings {
    /// Lifetime of a code.
    pub code_ttl: Duration,
    /// Attempts allowed at one code.
    pub max_attempts: u32,
    /// Lifetime of a verification token.
    pub token_ttl: Duration,
    /// Shortest gap between two mails to one address.
    pub resend_interval: Duration,
    /// Most mails to one address per hour.
    pub address_hourly_limit: u32,
    /// Most requests from one client per hour.
    pub client_hourly_limit: u32,
}

/// A confirmed address's token for sign-up.
#[derive(Debug, Clone)]
pub struct VerificationToken {
    /// The opaque token.
    pub token: String,
    /// Its lifetime.
    pub expires_in: Duration,
}

/// Issues and checks codes and tokens.
#[derive(Clone, Debug)]
pub struct Verification {
    store: Store,
    settings: VerificationSettings,
}

fn invalid_code() -> ServiceError {
    ServiceError::InvalidArgument {
        code: "invalid_code",
        message: "the code is wrong, expired or used up; ask for a new one".to_owned(),
    }
}

fn invalid_token() -> ServiceError {
    ServiceError::InvalidArgument {
        code: "invalid_verification_token",
        message: "the verification token is unknown, expired, used, or for another address".to_owned(),
    }
}

impl Verification {
    /// Codes and tokens in `store`.
    pub fn new(store: Store, settings: VerificationSettings) -> Self {
        Self { store, settings }
    }

    /// The lifetime of a code, for the mail's wording.
    pub fn code_ttl(&self) -> Duration {
        self.settings.code_ttl
    }

    /// Counts one send to `email` requested by `client` against the limits; RateLimited (with
    /// the wait) when one is exceeded.
    pub async fn admit_send(&self, email: &Email, client: Option<&str>) -> Result<(), ServiceError> {
        let cache = self.store.cache();
        if let Some(client) = client {
            let key = store::client_hour_key(client);
            let count = cache.increment(&key, HOUR).await.map_err(store::unavailable)?;
            if count > i64::from(self.settings.client_hourly_limit) {
                return Err(self.limited(&key, HOUR).await);
            }
        }
        let resend = store::resend_key(email);
        if !cache
            .set_if_absent(&resend, b"1", self.settings.resend_interval)
            .await
            .map_err(store::unavailable)?
        {
            return Err(self.limited(&resend, self.settings.resend_interval).await);
        }
        let hourly = store::address_hour_key(email);
        let count = cache.increment(&hourly, HOUR).await.map_err(store::unavailable)?;
        if count > i64::from(self.settings.address_hourly_limit) {
            return Err(self.limited(&hourly, HOUR).await);
        }
        Ok(())
    }

    /// Frees the resend slot after a mail could not be sent, so the user may retry at once.
    pub async fn release_send(&self, email: &Email) {
        if let Err(error) = self.store.cache().delete(&store::resend_key(email)).await {
            tracing::warn!(%error, "could not free the resend slot");
        }
    }

    async fn limited(&self, key: &str, window: Duration) -> ServiceError {
        ServiceError::RateLimited {
            retry_after: self.store.retry_after(key, window).await,
        }
    }

    /// Makes a new code for `email`, replacing any earlier one; returns it for the mail.
    pub async fn issue_code(&self, email: &Email) -> Result<String, ServiceError> {
        let code = secrets::new_code();
        let salt = secrets::random_bytes::<SALT_LEN>();
        let mut record = salt.to_vec();
        record.extend_from_slice(&code_digest(&salt, email, &code));
        let cache = self.store.cache();
        cache
            .delete(&store::attempts_key(email))
            .await
            .map_err(store::unavailable)?;
        cache
            .set(&store::code_key(email), &record, self.settings.code_ttl)
            .await
            .map_err(store::unavailable)?;
        Ok(code)
    }

    /// Checks `code` for `email`; if right, the code is used up and a verification token issued.
    pub async fn confirm(&self, email: &Email, code: &str) -> Result<VerificationToken, ServiceError> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            // Not a possible code: no attempt is spent on it, and the answer is the same.
            return Err(invalid_code());
        }
        let cache = self.store.cache();
        let code_key = store::code_key(email);
        let Some(record) = cache.get(&code_key).await.map_err(store::unavailable)? else {
            return Err(invalid_code());
        };
        let attempts_key = store::attempts_key(email);
        let attempt = cache
            .increment(&attempts_key, self.settings.code_ttl)
            .await
            .map_err(store::unavailable)?;
        let max = i64::from(self.settings.max_attempts);
        if attempt > max {
            self.burn(email).await?;
            return Err(invalid_code());
        }
        let right = match record.split_at_checked(SALT_LEN) {
            Some((salt, digest)) => secrets::equal(digest, &code_digest(salt, email, code)),
            None => false,
        };
        if !right {
            if attempt >= max {
                self.burn(email).await?;
            }
            return Err(invalid_code());
        }
        // Taking the code makes it single-use even against a concurrent right guess; a code
        // replaced meanwhile by a newer one does not count.
        match cache.take(&code_key).await.map_err(store::unavailable)? {
            Some(taken) if secrets::equal(&taken, &record) => {}
            _ => return Err(invalid_code()),
        }
        cache.delete(&attempts_key).await.map_err(store::unavailable)?;
        let token = secrets::new_token();
        cache
            .set(
                &store::verification_token_key(&token),
                email.as_str().as_bytes(),
                self.settings.token_ttl,
            )
            .await
            .map_err(store::unavailable)?;
        Ok(VerificationToken {
            token,
            expires_in: self.settings.token_ttl,
        })
    }

    async fn burn(&self, email: &Email) -> Result<(), ServiceError> {
        let cache = self.store.cache();
        cache
            .delete(&store::code_key(email))
            .await
            .map_err(store::unavailable)?;
        cache
            .delete(&store::attempts_key(email))
            .await
            .map_err(store::unavailable)?;
        Ok(())
    }

    /// Checks that `token` is live and confirms `email`, without using it up (so a sign-up
    /// refused for another reason can be retried with it).
    pub async fn check_token(&self, token: &str, email: &Email) -> Result<(), ServiceError> {
        let held = self
            .store
            .cache()
            .get(&store::verification_token_key(token))
            .await
            .map_err(store::unavailable)?;
        match held {
            Some(address) if secrets::equal(&address, email.as_str().as_bytes()) => Ok(()),
            _ => Err(invalid_token()),
        }
    }

    /// Uses `token` up; fails if it was used meanwhile.
    pub async fn consume_token(&self, token: &str, email: &Email) -> Result<(), ServiceError> {
        let held = self
            .store
            .cache()
            .take(&store::verification_token_key(token))
            .await
            .map_err(store::unavailable)?;
        match held {
            Some(address) if secrets::equal(&address, email.as_str().as_bytes()) => Ok(()),
            _ => Err(invalid_token()),
        }
    }
}

/// The stored digest of a code: bound to its salt and address.
fn code_digest(salt: &[u8], email: &Email, code: &str) -> [u8; 32] {
    secrets::digest(&[salt, email.as_str().as_bytes(), b"\0", code.as_bytes()])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shop_platform::cache::MemoryCache;

    use super::*;

    fn verification() -> Verification {
        let settings = VerificationSettings {
            code_ttl: Duration::from_secs(300),
            max_attempts: 5,
            token_ttl: Duration::from_secs(900),
            resend_interval: Duration::from_secs(60),
            address_hourly_limit: 5,
            client_hourly_limit: 2,
        };
        Verification::new(Store::new(Arc::new(MemoryCache::new("t:"))), settings)
    }

    fn wrong(code: &str) -> String {
        format!("{:06}", (code.parse::<u32>().unwrap_or(0) + 1) % 1_000_000)
    }

    #[tokio::test]
    async fn a_right_code_works_once() -> anyhow::Result<()> {
        let verification = verification();
        let email = Email::parse("a@example.com")?;
        let code = verification.issue_code(&email).await?;
        let token = verification.confirm(&email, &code).await?;
        assert!(verification.confirm(&email, &code).await.is_err());
        let other = Email::parse("b@example.com")?;
        assert!(verification.check_token(&token.token, &other).await.is_err());
        verification.check_token(&token.token, &email).await?;
        verification.consume_token(&token.token, &email).await?;
        assert!(verification.consume_token(&token.token, &email).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn the_last_wrong_attempt_burns_the_code() -> anyhow::Result<()> {
        let verification = verification();
        let email = Email::parse("a@example.com")?;
        let code = verification.issue_code(&email).await?;
        for _ in 0..5 {
            let error = verification.confirm(&email, &wrong(&code)).await.err();
            assert_eq!(error.map(|e| e.machine_code()), Some("invalid_code"));
        }
        assert!(verification.confirm(&email, &code).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn sends_are_limited_per_address_and_per_client() -> anyhow::Result<()> {
        let verification = verification();
        let (a, b, c) = (
            Email::parse("a@example.com")?,
            Email::parse("b@example.com")?,
            Email::parse("c@example.com")?,
        );
        verification.admit_send(&a, Some("10.0.0.1")).await?;
        let again = verification.admit_send(&a, Some("10.0.0.2")).await.err();
        assert!(
            matches!(again, Some(ServiceError::RateLimited { retry_after }) if retry_after <= Duration::from_secs(60))
        );
        verification.admit_send(&b, Some("10.0.0.1")).await?;
        let third = verification.admit_send(&c, Some("10.0.0.1")).await.err();
        assert!(matches!(third, Some(ServiceError::RateLimited { .. })));
        Ok(())
    }
}
