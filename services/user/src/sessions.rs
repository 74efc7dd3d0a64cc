//! Sessions and their tokens. A sign-in opens a session and hands out a token pair; each refresh
//! uses the refresh token up (a conditional update, so two concurrent refreshes cannot both
//! win) and issues the next one of the same session. A refresh token presented a second time
//! means it was copied: the whole session ends.
//!
//! Ending a session is recorded in the database, which is the truth (its refresh tokens stop
//! working, and its end is durable), and in the cache for one access-token lifetime, so that
//! CheckTokenRevoked answers from the cache. When the cache does not know a session (flushed,
//! restarted without persistence, or down), CheckTokenRevoked reads the session's row and
//! remembers a live one briefly: a lost cache never brings an ended session back. Logout also
//! denylists the presented access token's `jti` until its expiry (in the cache only: the
//! session it belongs to ends in the database too).

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _,
    QuerySelect as _, TransactionTrait as _, sea_query::Query,
};
use shop_platform::db::one_of;
use shop_platform::grpc::{error::ServiceError, identity::Role};
use uuid::Uuid;

use crate::{
    entity::{refresh_token, session, user},
    secrets,
    store::{self, Store},
    tokens::{AccessToken, Tokens},
};

/// How long past a token's expiry its revocation is kept: verifiers accept a few seconds of
/// clock skew past `exp`, and a revoked token must stay refused through that leeway too.
const REVOCATION_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The cached state of a session that has ended (any other value is read as ended too, so
/// entries written before states existed keep refusing).
const SESSION_ENDED: &[u8] = b"ended";
/// The cached state of a session the database showed live.
const SESSION_LIVE: &[u8] = b"live";
/// How long a "live" read from the database is reused. Ending a session overwrites it at once;
/// this bounds only what an end whose cache write failed leaves behind.
const LIVE_SESSION_TTL: Duration = Duration::from_secs(10);

/// A fresh token pair.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The access token.
    pub access: AccessToken,
    /// The opaque refresh token.
    pub refresh_token: String,
}

/// Opens, refreshes and ends sessions.
#[derive(Clone, Debug)]
pub struct Sessions {
    db: DatabaseConnection,
    store: Store,
    tokens: Arc<Tokens>,
    refresh_ttl: Duration,
}

fn invalid_refresh_token() -> ServiceError {
    ServiceError::Unauthenticated {
        code: "invalid_refresh_token",
        message: "the refresh token is unknown, expired, used, or of an ended session; sign in again".to_owned(),
    }
}

/// Now, at the microsecond precision both databases keep, so stored times compare equal.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

impl Sessions {
    /// Sessions stored in `db`, revocations in `store`, access tokens from `tokens`.
    pub fn new(db: DatabaseConnection, store: Store, tokens: Arc<Tokens>, refresh_ttl: Duration) -> Self {
        Self {
            db,
            store,
            tokens,
            refresh_ttl,
        }
    }

    /// The access and refresh token signer.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    fn refresh_expiry(&self, from: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
        Ok(from + chrono::Duration::from_std(self.refresh_ttl).context("refresh token lifetime")?)
    }

    /// Opens a session for `user` and returns its first token pair.
    pub async fn open(&self, user: &user::Model) -> Result<TokenPair, ServiceError> {
        let now = now();
        let session_id = Uuid::now_v7();
        let refresh = secrets::new_token();
        let txn = self.db.begin().await?;
        session::ActiveModel {
            id: Set(session_id),
            user_id: Set(user.id),
            created_at: Set(now),
            ended_at: Set(None),
        }
        .insert(&txn)
        .await?;
        self.store_refresh_token(&txn, session_id, &refresh, now).await?;
        txn.commit().await?;
        Ok(TokenPair {
            access: self.access_token(user, session_id)?,
            refresh_token: refresh,
        })
    }

    async fn store_refresh_token(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        session_id: Uuid,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        refresh_token::ActiveModel {
            token_hash: Set(secrets::digest_hex(token.as_bytes())),
            session_id: Set(session_id),
            created_at: Set(now),
            expires_at: Set(self.refresh_expiry(now)?),
            used_at: Set(None),
        }
        .insert(conn)
        .await?;
        Ok(())
    }

    fn access_token(&self, user: &user::Model, session_id: Uuid) -> Result<AccessToken, ServiceError> {
        let role: Role = user
            .role
            .parse()
            .map_err(|error: String| anyhow::anyhow!("user {}: {error}", user.id))?;
        Ok(self.tokens.issue(user.id, role, session_id)?.0)
    }

    /// Exchanges a refresh token for the next pair of its session. A token already used ends
    /// its session.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, ServiceError> {
        let hash = secrets::digest_hex(token.as_bytes());
        let Some(row) = refresh_token::Entity::find_by_id(hash.clone()).one(&self.db).await? else {
            return Err(invalid_refresh_token());
        };
        if row.used_at.is_some() {
            tracing::warn!(session = %row.session_id, "refresh token reused: ending its session");
            self.end(&[row.session_id]).await?;
            return Err(invalid_refresh_token());
        }
        let now = now();
        if row.expires_at <= now {
            return Err(invalid_refresh_token());
        }
        let Some(session) = session::Entity::find_by_id(row.session_id).one(&self.db).await? else {
            return Err(invalid_refresh_token());
        };
        if session.ended_at.is_some() {
            return Err(invalid_refresh_token());
        }
        let Some(user) = user::Entity::find_by_id(session.user_id).one(&self.db).await? else {
            return Err(invalid_refresh_token());
        };

        let next = secrets::new_token();
        let txn = self.db.begin().await?;
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, sea_orm::sea_query::Expr::value(now))
            .filter(refresh_token::Column::TokenHash.eq(hash))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if spent.rows_affected != 1 {
            // Another request used it between our read and this update: a reuse too.
            txn.rollback().await?;
            tracing::warn!(session = %session.id, "refresh token used concurrently: ending its session");
            self.end(&[session.id]).await?;
            return Err(invalid_refresh_token());
        }
        self.store_refresh_token(&txn, session.id, &next, now).await?;
        txn.commit().await?;
        Ok(TokenPair {
            access: self.access_token(&user, session.id)?,
            refresh_token: next,
        })
    }

    /// The session and owner of a refresh token, if it is known.
    pub async fn owner_of_refresh_token(&self, token: &str) -> Result<Option<(Uuid, Uuid)>, ServiceError> {
        let hash = secrets::digest_hex(token.as_bytes());
        let Some(row) = refresh_token::Entity::find_by_id(hash).one(&self.db).await? else {
            return Ok(None);
        };
        let owner = session::Entity::find_by_id(row.session_id)
            .one(&self.db)
            .await?
            .map(|session| (session.id, session.user_id));
        Ok(owner)
    }

    /// Ends `sessions` (idempotent): their refresh tokens and access tokens stop working.
    pub async fn end(&self, sessions: &[Uuid]) -> Result<(), ServiceError> {
        if sessions.is_empty() {
            return Ok(());
        }
        session::Entity::update_many()
            .col_expr(session::Column::EndedAt, sea_orm::sea_query::Expr::value(now()))
            .filter(one_of(
                self.db.get_database_backend(),
                session::Column::Id,
                sessions.iter().copied(),
            ))
            .filter(session::Column::EndedAt.is_null())
            .exec(&self.db)
            .await?;
        self.refuse_access_tokens(sessions).await
    }

    /// Makes CheckTokenRevoked refuse the access tokens of `sessions` (for one access-token
    /// lifetime, after which they have all expired). The cache half of [`Sessions::end`], for
    /// callers that remove the sessions' rows themselves.
    pub async fn refuse_access_tokens(&self, sessions: &[Uuid]) -> Result<(), ServiceError> {
        let ttl = self.tokens.access_ttl() + REVOCATION_MARGIN;
        for session in sessions {
            self.store
                .cache()
                .set(&store::session_state_key(&session.to_string()), SESSION_ENDED, ttl)
                .await
                .map_err(store::unavailable)?;
        }
        Ok(())
    }

    /// The live sessions of `user`, except `keep`, read through `conn` (a transaction or not).
    pub async fn live_sessions_of(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        user: Uuid,
        keep: Option<Uuid>,
    ) -> Result<Vec<Uuid>, ServiceError> {
        let mut query = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::UserId.eq(user))
            .filter(session::Column::EndedAt.is_null());
        if let Some(keep) = keep {
            query = query.filter(session::Column::Id.ne(keep));
        }
        Ok(query.into_tuple().all(conn).await?)
    }

    /// Ends every live session of `user`, except `keep`.
    pub async fn end_all_of(&self, user: Uuid, keep: Option<Uuid>) -> Result<(), ServiceError> {
        let ids = self.live_sessions_of(&self.db, user, keep).await?;
        self.end(&ids).await
    }

    /// Whether `session` exists, belongs to `user` and is live.
    pub async fn is_live_session_of(&self, session: Uuid, user: Uuid) -> Result<bool, ServiceError> {
        let found = session::Entity::find_by_id(session).one(&self.db).await?;
        Ok(found.is_some_and(|s| s.user_id == user && s.ended_at.is_none()))
    }

    /// Refuses the access token `jti` until `expires_at` (and a margin beyond).
    pub async fn revoke_access_token(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<(), ServiceError> {
        let Ok(left) = (expires_at - Utc::now()).to_std() else {
            // Already expired: nothing to refuse.
            return Ok(());
        };
        let left = left + REVOCATION_MARGIN;
        self.store
            .cache()
            .set(&store::revoked_token_key(jti), b"1", left)
            .await
            .map_err(store::unavailable)
    }

    /// Whether the access token `jti` of `session` (may be empty) was revoked: by its `jti` in
    /// the cache, or through its session, from the cache or else from the database.
    pub async fn is_revoked(&self, jti: &str, session: &str) -> Result<bool, ServiceError> {
        let cache = self.store.cache();
        match cache.exists(&store::revoked_token_key(jti)).await {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "the revocation cache does not answer; asking the database"),
        }
        if session.is_empty() {
            return Ok(false);
        }
        let key = store::session_state_key(session);
        match cache.get(&key).await {
            Ok(Some(state)) => return Ok(state != SESSION_LIVE),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "the revocation cache does not answer; asking the database"),
        }
        // A session id the service never issued (or whose row is gone: deleted accounts, purged
        // sessions) has no live tokens.
        let ended = match Uuid::parse_str(session) {
            Ok(id) => session::Entity::find_by_id(id)
                .one(&self.db)
                .await?
                .is_none_or(|row| row.ended_at.is_some()),
            Err(_) => true,
        };
        // Remembered for the next check; a failure to remember changes no answer.
        let remembered = if ended {
            let ttl = self.tokens.access_ttl() + REVOCATION_MARGIN;
            cache.set(&key, SESSION_ENDED, ttl).await
        } else {
            // Only if absent: an end recorded meanwhile must not be overwritten by this read.
            cache
                .set_if_absent(&key, SESSION_LIVE, LIVE_SESSION_TTL)
                .await
                .map(|_| ())
        };
        if let Err(error) = remembered {
            tracing::debug!(%error, "not remembering a session's state");
        }
        Ok(ended)
    }

    /// Deletes expired refresh tokens, sessions ended longer ago than an access-token lifetime,
    /// and sessions left without any refresh token. Returns how many sessions went.
    pub async fn purge_expired(&self) -> Result<u64, ServiceError> {
        let now = now();
        refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        let ended_before =
            now - chrono::Duration::from_std(self.tokens.access_ttl()).context("access token lifetime")?;
        let ended = session::Entity::delete_many()
            .filter(session::Column::EndedAt.lt(ended_before))
            .exec(&self.db)
            .await?;
        let with_tokens = Query::select()
            .column(refresh_token::Column::SessionId)
            .from(refresh_token::Entity)
            .to_owned();
        let idle = session::Entity::delete_many()
            .filter(session::Column::Id.not_in_subquery(with_tokens))
            .exec(&self.db)
            .await?;
        Ok(ended.rows_affected + idle.rows_affected)
    }
}
