//! PlaceOrder's idempotency keys. A key is written in the transaction that writes its order,
//! already bound to it (`claim_keys`, many keys in one statement), so the key and the order
//! commit together or not at all: a retried request finds its order, a concurrent duplicate
//! waits for the first one's transaction and then finds its order too, and a different request
//! under the key is refused (`idempotency_key_reused`). Nothing is held before the order is
//! written, so a caller that dies mid-placement leaves nothing to expire.
//!
//! Rows written by earlier versions while a placement was in progress (`order_id` empty, with
//! a lease in `claimed_until`) are still understood: while the lease holds, the key is
//! `idempotency_key_in_use`; after it, the next placement under the key takes the row over.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait as _, OnConflict, Query},
};
use sha2::{Digest as _, Sha256};
use shop_platform::{
    db::{INSERT_CHUNK, fill_insert},
    group_commit::{GroupCommit, GroupOptions, GroupWriter},
    grpc::error::ServiceError,
};
use uuid::Uuid;

use crate::entity::idempotency::{self, Column};

/// The longest a placement may take (it is answered UNAVAILABLE after this; a retry with the
/// same key finds the order if it was written after all).
pub const PLACEMENT_LIMIT: Duration = Duration::from_secs(10);

/// The longest key.
const MAX_KEY_LEN: usize = 255;

/// Checks a client's key: 1 to 255 printable ASCII characters.
pub fn validate_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(ServiceError::invalid(
            "idempotency_key must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(())
}

/// The fingerprint stored with a key: SHA-256 of the request's canonical form, hex.
pub fn fingerprint(canonical: &str) -> String {
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What a key already stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Nothing yet (or an earlier version's claim whose lease ran out): place the order.
    Free,
    /// The key placed this order.
    Placed(Uuid),
}

/// What `key` of `user` stands for, for a request with fingerprint `hash` at `now`: an error
/// when the key was used for another request, or is held by an earlier version's placement.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    user: Uuid,
    key: &str,
    hash: &str,
) -> Result<Existing, ServiceError> {
    let row = idempotency::Entity::find_by_id((user, key.to_owned()))
        .one(conn)
        .await?;
    decide(row.as_ref(), now, hash)
}

/// What the stored `row` of a key (if any) means for a request with fingerprint `hash` at
/// `now` (see [`find`]).
pub fn decide(row: Option<&idempotency::Model>, now: DateTime<Utc>, hash: &str) -> Result<Existing, ServiceError> {
    let Some(row) = row else {
        return Ok(Existing::Free);
    };
    if row.request_hash != hash {
        return Err(ServiceError::AlreadyExists {
            code: "idempotency_key_reused",
            message: "this idempotency key was used for a different order".into(),
        });
    }
    match row.order_id {
        Some(order_id) => Ok(Existing::Placed(order_id)),
        None if row.claimed_until <= now => Ok(Existing::Free),
        None => Err(ServiceError::Aborted {
            code: "idempotency_key_in_use",
            message: "another request with this idempotency key is in progress; retry later".into(),
        }),
    }
}

/// Looks up the keys of placements that arrive together with one query: every new order from
/// the cart asks first whether its key placed one already (its cart lines are gone after it),
/// and hundreds may ask at once (the group committer's batching, used for a read).
pub(crate) type KeyLookups = GroupCommit<KeyReader>;

/// Starts the readers of keys in `db`.
pub(crate) fn start_lookups(db: DatabaseConnection) -> KeyLookups {
    GroupCommit::start(KeyReader { db }, GroupOptions::default())
}

/// Reads batches of keys.
#[derive(Debug)]
pub(crate) struct KeyReader {
    db: DatabaseConnection,
}

#[async_trait]
impl GroupWriter for KeyReader {
    /// The caller and its key.
    type Item = (Uuid, String);
    /// The key's row, if it exists.
    type Outcome = Result<Option<idempotency::Model>, DbErr>;

    async fn write(&self, keys: Vec<(Uuid, String)>) -> Vec<Self::Outcome> {
        let mut found: HashMap<(Uuid, String), idempotency::Model> = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(INSERT_CHUNK) {
            let any = chunk.iter().fold(Condition::any(), |any, (user, key)| {
                any.add(
                    Condition::all()
                        .add(Column::UserId.eq(*user))
                        .add(Column::Key.eq(key.as_str())),
                )
            });
            match idempotency::Entity::find().filter(any).all(&self.db).await {
                Ok(rows) => found.extend(rows.into_iter().map(|row| ((row.user_id, row.key.clone()), row))),
                Err(error) => return keys.iter().map(|_| Err(error.clone())).collect(),
            }
        }
        keys.into_iter().map(|key| Ok(found.get(&key).cloned())).collect()
    }
}

/// A key to write with its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey<'a> {
    /// The caller.
    pub user: Uuid,
    /// The client's key.
    pub key: &'a str,
    /// The request's fingerprint.
    pub hash: &'a str,
    /// The order it places.
    pub order_id: Uuid,
}

/// Writes `keys`, each bound to its order, inside the orders' transaction, and returns the
/// orders whose key was written: a key that exists already (placed by another request, or
/// repeated within `keys`: the first one wins) leaves its order out, and the caller writes
/// only the others. A concurrent transaction writing the same key makes this one wait for it.
pub async fn claim_keys<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    keys: &[NewKey<'_>],
) -> Result<HashSet<Uuid>, DbErr> {
    let mut seen = HashSet::new();
    let mut keys: Vec<&NewKey<'_>> = keys.iter().filter(|k| seen.insert((k.user, k.key))).collect();
    // Written in one order by every writer, so two transactions writing some of the same keys
    // wait for each other instead of deadlocking.
    keys.sort_unstable_by_key(|k| (k.user, k.key));
    let mut claimed = HashSet::with_capacity(keys.len());
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(idempotency::Entity).columns([
            Column::UserId,
            Column::Key,
            Column::RequestHash,
            Column::OrderId,
            Column::ClaimedUntil,
            Column::CreatedAt,
        ]);
        let rows = chunk
            .iter()
            .map(|key| {
                vec![
                    key.user.into(),
                    key.key.into(),
                    key.hash.into(),
                    Some(key.order_id).into(),
                    now.into(),
                    now.into(),
                ]
            })
            .collect();
        fill_insert(
            &mut insert,
            conn.get_database_backend(),
            "idempotency_keys",
            &[
                "user_id",
                "key",
                "request_hash",
                "order_id",
                "claimed_until",
                "created_at",
            ],
            rows,
        );
        // Only an earlier version's claim whose lease ran out is taken over.
        let stale = Expr::col((idempotency::Entity, Column::OrderId))
            .is_null()
            .and(Expr::col((idempotency::Entity, Column::ClaimedUntil)).lte(now));
        insert
            .on_conflict(
                OnConflict::columns([Column::UserId, Column::Key])
                    .update_columns([
                        Column::RequestHash,
                        Column::OrderId,
                        Column::ClaimedUntil,
                        Column::CreatedAt,
                    ])
                    .action_and_where(stale)
                    .to_owned(),
            )
            .returning_col(Column::OrderId);
        for row in conn.query_all(&insert).await? {
            claimed.insert(row.try_get::<Uuid>("", "order_id")?);
        }
    }
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_up_to_255() {
        assert!(validate_key("a").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key("with space ~").is_ok());
        for bad in [String::new(), "k".repeat(256), "tab\there".into(), "café".into()] {
            assert!(validate_key(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints_are_stable_hex() {
        let hash = fingerprint("from_cart");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, fingerprint("from_cart"));
        assert_ne!(hash, fingerprint("items"));
    }
}
