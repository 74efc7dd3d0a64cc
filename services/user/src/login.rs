//! Sign-in, refresh, sign-out and the revocation check.
//!
//! An unknown address and a wrong password get the same error after the same work (a dummy
//! hash is verified for unknown addresses), and both count towards the failure limits of the
//! address (`throttle`).

use chrono::{DateTime, Utc};
use shop_platform::grpc::{error::ServiceError, identity::Caller};

use crate::{
    context::Context,
    domain::{self, Email},
    sessions::TokenPair,
    throttle::{Attempt, PasswordCheck},
    users,
};

fn invalid_credentials() -> ServiceError {
    ServiceError::Unauthenticated {
        code: "invalid_credentials",
        message: "wrong email address or password".to_owned(),
    }
}

/// What Logout revokes.
#[derive(Debug, Clone)]
pub struct Logout {
    /// Also end this refresh token's session, if it is the caller's.
    pub refresh_token: Option<String>,
    /// The `jti` of the access token the request came with.
    pub access_token_id: String,
    /// That token's expiry.
    pub access_token_expires_at: DateTime<Utc>,
}

impl Context {
    /// Checks the credentials of a sign-in from `client` and opens a session.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, email: &str, password: &str, client: &str) -> Result<TokenPair, ServiceError> {
        let email = Email::parse(email)?;
        let password = domain::presented_password(password)?;
        let attempt = Attempt {
            check: PasswordCheck::Login,
            email: &email,
            client,
        };
        self.throttle.attempt(attempt).await?;
        let user = users::find_by_email(&self.db, &email).await?;
        let hash = user.as_ref().map(|user| user.password_hash.as_str());
        let (Some(user), true) = (&user, self.passwords.verify(password, hash).await?) else {
            self.throttle.failed(attempt).await?;
            return Err(invalid_credentials());
        };
        self.throttle.succeeded(attempt).await?;
        self.sessions.open(user).await
    }

    /// Checks `password` against the account of `user` for a sensitive change (`check`), from
    /// `client`, under that check's own failure limits; PERMISSION_DENIED `invalid_credentials`
    /// when wrong.
    pub async fn confirm_password(
        &self,
        check: PasswordCheck,
        user: &crate::entity::user::Model,
        password: &str,
        client: &str,
    ) -> Result<(), ServiceError> {
        let password = domain::presented_password(password)?;
        let email = Email::parse(&user.email)?;
        let attempt = Attempt {
            check,
            email: &email,
            client,
        };
        self.throttle.attempt(attempt).await?;
        if !self.passwords.verify(password, Some(&user.password_hash)).await? {
            self.throttle.failed(attempt).await?;
            return Err(ServiceError::PermissionDenied {
                code: "invalid_credentials",
                message: "the password is wrong".to_owned(),
            });
        }
        self.throttle.succeeded(attempt).await
    }

    /// Exchanges a refresh token for the next pair.
    #[tracing::instrument(skip_all)]
    pub async fn refresh_session(&self, refresh_token: &str) -> Result<TokenPair, ServiceError> {
        let token = refresh_token.trim();
        if token.is_empty() || token.len() > 256 {
            return Err(ServiceError::Unauthenticated {
                code: "invalid_refresh_token",
                message: "the refresh token is unknown".to_owned(),
            });
        }
        self.sessions.refresh(token).await
    }

    /// Signs the caller out: their session, the presented access token, and the refresh token's
    /// session when it is theirs. Idempotent.
    #[tracing::instrument(skip_all, fields(user = %caller.user_id))]
    pub async fn logout(&self, caller: &Caller, logout: Logout) -> Result<(), ServiceError> {
        let jti = logout.access_token_id.trim();
        if jti.is_empty() || jti.len() > 128 {
            return Err(ServiceError::invalid("access_token_id: required"));
        }
        self.sessions
            .revoke_access_token(jti, logout.access_token_expires_at)
            .await?;
        let mut ended = Vec::new();
        if let Some(session) = caller.session_id
            && self.sessions.is_live_session_of(session, caller.user_id).await?
        {
            ended.push(session);
        }
        if let Some(token) = logout.refresh_token.as_deref().map(str::trim).filter(|t| !t.is_empty())
            && let Some((session, owner)) = self.sessions.owner_of_refresh_token(token).await?
            && owner == caller.user_id
        {
            ended.push(session);
        }
        self.sessions.end(&ended).await
    }

    /// Whether an access token was revoked (itself, or through its session).
    pub async fn check_token_revoked(&self, jti: &str, session_id: &str) -> Result<bool, ServiceError> {
        let jti = jti.trim();
        if jti.is_empty() || jti.len() > 128 {
            return Err(ServiceError::invalid("jti: required"));
        }
        let session = session_id.trim();
        if session.len() > 128 {
            return Err(ServiceError::invalid("session_id: too long"));
        }
        self.sessions.is_revoked(jti, session).await
    }
}
