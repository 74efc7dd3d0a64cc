//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane), on the
//! blocking thread pool so the async workers keep serving while a hash is computed. A dummy
//! hash made at start is verified for unknown accounts, so "no such account" costs the same
//! time as "wrong password" and sign-in timing reveals nothing.

use std::sync::Arc;

use anyhow::Context as _;
use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    dummy: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    /// Prepares the dummy hash.
    pub async fn new() -> anyhow::Result<Self> {
        let dummy = hash_blocking(crate::secrets::new_token()).await?;
        Ok(Self { dummy: dummy.into() })
    }

    /// The PHC string (`$argon2id$v=19$…`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        hash_blocking(password.to_owned()).await
    }

    /// Whether `password` matches `hash`; with `None` (no such account) the dummy hash is
    /// checked so the answer takes as long, and is always false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| Arc::clone(&self.dummy), Arc::from);
        let password = password.to_owned();
        let matches =
            tokio::task::spawn_blocking(move || Argon2::default().verify_password(password.as_bytes(), &*hash).is_ok())
                .await
                .context("password verification task")?;
        Ok(known && matches)
    }
}

async fn hash_blocking(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))
    })
    .await
    .context("password hashing task")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() -> anyhow::Result<()> {
        let passwords = Passwords::new().await?;
        let hash = passwords.hash("s3cret!pw").await?;
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.verify("s3cret!pw", Some(&hash)).await?);
        assert!(!passwords.verify("s3cret!px", Some(&hash)).await?);
        assert!(!passwords.verify("anything", None).await?);
        Ok(())
    }
}
