//! Keyset pagination shared by every list rpc: page sizes checked once (0 → 20, 1–100, more is
//! INVALID_ARGUMENT) and opaque cursors. A cursor is the last row's sort key, bound to the
//! filters it was issued for, so a cursor reused with other filters (or made up) is refused with
//! `invalid_cursor` instead of silently returning a wrong page.
//!
//! Every list is newest first, by a time column and then the id: [`newest_first`] runs that
//! keyset query once for all of them.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Serialize, de::DeserializeOwned};

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, EntityTrait, QueryFilter as _, QueryOrder as _, QuerySelect as _, Select,
    sea_query::{Expr, ExprTrait as _},
};
use uuid::Uuid;

use crate::grpc::error::ServiceError;

/// A row's place in a newest-first list: its time in microseconds since the epoch, and its id.
/// It is what a cursor holds.
pub type Position = (i64, Uuid);

/// The position of a row with time `at` and id `id`.
pub fn position(at: DateTime<Utc>, id: Uuid) -> Position {
    (at.timestamp_micros(), id)
}

/// One page of `select`, newest first by `time` then `id` (both descending), after `after`
/// (the position of the previous page's last row): at most `limit` rows, and the position of
/// the last one when more follow.
pub async fn newest_first<E: EntityTrait>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    (time, id): (E::Column, E::Column),
    after: Option<Position>,
    limit: u64,
    position_of: impl Fn(&E::Model) -> Position,
) -> Result<(Vec<E::Model>, Option<Position>), ServiceError> {
    let mut select = select;
    if let Some((micros, last_id)) = after {
        let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(invalid_cursor)?;
        // A row-value comparison: PostgreSQL turns it into one index range condition.
        select = select.filter(
            Expr::tuple([Expr::col(time), Expr::col(id)]).lt(Expr::tuple([Expr::value(at), Expr::value(last_id)])),
        );
    }
    let mut rows = select
        .order_by_desc(time)
        .order_by_desc(id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = match rows.last() {
        Some(last) if more => Some(position_of(last)),
        _ => None,
    };
    Ok((rows, next))
}

fn invalid_cursor() -> ServiceError {
    ServiceError::InvalidArgument {
        code: "invalid_cursor",
        message: "the cursor is not valid for this list".into(),
    }
}

/// The page size when the request says 0.
pub const DEFAULT_LIMIT: u64 = 20;
/// The largest page.
pub const MAX_LIMIT: u64 = 100;

/// The page size a request asks for, checked.
pub fn limit(requested: u32) -> Result<u64, ServiceError> {
    match u64::from(requested) {
        0 => Ok(DEFAULT_LIMIT),
        n if n <= MAX_LIMIT => Ok(n),
        n => Err(ServiceError::InvalidArgument {
            code: "invalid_limit",
            message: format!("limit {n} is above the maximum of {MAX_LIMIT}"),
        }),
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Envelope<T> {
    /// A fingerprint of the filters the cursor belongs to.
    s: u64,
    /// The position: the last returned row's sort key.
    p: T,
}

/// Encodes `position` (the last row's sort key) as an opaque cursor for the list with `scope`
/// (a string naming the rpc and its filters).
pub fn encode_cursor<T: Serialize>(position: &T, scope: &str) -> String {
    let envelope = Envelope {
        s: fingerprint(scope),
        p: position,
    };
    // Serializing plain keys cannot fail; an empty cursor would only end the list early.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// Decodes a cursor issued by [`encode_cursor`] for the same `scope`; `Ok(None)` for the first
/// page (an empty cursor).
pub fn decode_cursor<T: DeserializeOwned>(raw: &str, scope: &str) -> Result<Option<T>, ServiceError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let invalid = invalid_cursor;
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let envelope: Envelope<T> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if envelope.s != fingerprint(scope) {
        return Err(invalid());
    }
    Ok(Some(envelope.p))
}

/// FNV-1a: stable across processes and releases (unlike `DefaultHasher`), which cursors need.
fn fingerprint(scope: &str) -> u64 {
    scope.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(limit(0).ok(), Some(20));
        assert_eq!(limit(1).ok(), Some(1));
        assert_eq!(limit(100).ok(), Some(100));
        assert!(limit(101).is_err());
    }

    #[test]
    fn cursors_round_trip_within_their_scope_only() {
        let position = ("2026-11-24T00:00:00Z".to_owned(), "3f1c".to_owned());
        let cursor = encode_cursor(&position, "products?q=lamp");
        let back: Option<(String, String)> = decode_cursor(&cursor, "products?q=lamp").ok().flatten();
        assert_eq!(back, Some(position));
        assert!(decode_cursor::<(String, String)>(&cursor, "products?q=desk").is_err());
        assert!(decode_cursor::<(String, String)>("garbage!", "products?q=lamp").is_err());
        assert_eq!(decode_cursor::<(String, String)>("", "x").ok(), Some(None));
    }
}
