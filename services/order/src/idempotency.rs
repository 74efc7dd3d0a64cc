//! PlaceOrder's idempotency keys. A call claims its (caller, key) before asking other services,
//! with a short lease, and binds the key to its order in the order's own transaction, so a
//! retried request finds its order, a concurrent duplicate is told to retry
//! (`idempotency_key_in_use`), and a different request under the key is refused
//! (`idempotency_key_reused`). A claim left by a caller that died expires with its lease; a
//! failed placement gives its claim up at once so the client can retry with the same key.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::OnConflict};
use sha2::{Digest as _, Sha256};
use shop_platform::grpc::error::ServiceError;
use uuid::Uuid;

use crate::{clock, entity::idempotency};

/// The longest a placement may take once its key is claimed (it is cut short after this, and
/// gives its claim up).
pub const PLACEMENT_LIMIT: Duration = Duration::from_secs(10);

/// How long a claim holds: the placement's limit and a margin. A claim outlives its call only
/// when the process died mid-placement; the client's retry then waits at most this long.
const LEASE: Duration = Duration::from_secs(15);

/// The longest key.
const MAX_KEY_LEN: usize = 255;

/// What claiming a key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours until the lease ends: place the order.
    Claimed,
    /// The key already placed this order.
    Placed(Uuid),
}

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

/// Claims `key` for `user` and a request with fingerprint `hash`.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    user: Uuid,
    key: &str,
    hash: &str,
) -> Result<Claim, ServiceError> {
    let lease_end = clock::after(now, LEASE);
    let inserted = idempotency::Entity::insert(idempotency::ActiveModel {
        user_id: Set(user),
        key: Set(key.to_owned()),
        request_hash: Set(hash.to_owned()),
        order_id: Set(None),
        claimed_until: Set(lease_end),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([idempotency::Column::UserId, idempotency::Column::Key])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }

    let existing = idempotency::Entity::find_by_id((user, key.to_owned()))
        .one(conn)
        .await?
        .ok_or_else(in_use)?; // given up between our insert and this read
    if existing.request_hash != hash {
        return Err(ServiceError::AlreadyExists {
            code: "idempotency_key_reused",
            message: "this idempotency key was used for a different order".into(),
        });
    }
    if let Some(order_id) = existing.order_id {
        return Ok(Claim::Placed(order_id));
    }
    // In progress elsewhere; take it over only if its lease ran out (one taker wins).
    let taken = idempotency::Entity::update_many()
        .col_expr(idempotency::Column::ClaimedUntil, lease_end.into())
        .filter(idempotency::Column::UserId.eq(user))
        .filter(idempotency::Column::Key.eq(key))
        .filter(idempotency::Column::OrderId.is_null())
        .filter(idempotency::Column::ClaimedUntil.lte(now))
        .exec(conn)
        .await?
        .rows_affected;
    if taken == 1 { Ok(Claim::Claimed) } else { Err(in_use()) }
}

/// Binds the claimed key to `order_id`, inside the order's transaction. `false` when the key
/// no longer waits for an order (another call took the claim over and placed one).
pub async fn bind<C: ConnectionTrait>(conn: &C, user: Uuid, key: &str, order_id: Uuid) -> Result<bool, DbErr> {
    let bound = idempotency::Entity::update_many()
        .col_expr(idempotency::Column::OrderId, Some(order_id).into())
        .filter(idempotency::Column::UserId.eq(user))
        .filter(idempotency::Column::Key.eq(key))
        .filter(idempotency::Column::OrderId.is_null())
        .exec(conn)
        .await?
        .rows_affected;
    Ok(bound == 1)
}

/// The order `key` placed for `user`, if any.
pub async fn placed<C: ConnectionTrait>(conn: &C, user: Uuid, key: &str) -> Result<Option<Uuid>, DbErr> {
    Ok(idempotency::Entity::find_by_id((user, key.to_owned()))
        .one(conn)
        .await?
        .and_then(|row| row.order_id))
}

/// Gives up an unbound claim after a failed placement, so a retry need not wait for the lease.
pub async fn give_up<C: ConnectionTrait>(conn: &C, user: Uuid, key: &str) -> Result<(), DbErr> {
    idempotency::Entity::delete_many()
        .filter(idempotency::Column::UserId.eq(user))
        .filter(idempotency::Column::Key.eq(key))
        .filter(idempotency::Column::OrderId.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

fn in_use() -> ServiceError {
    ServiceError::Aborted {
        code: "idempotency_key_in_use",
        message: "another request with this idempotency key is in progress; retry later".into(),
    }
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
