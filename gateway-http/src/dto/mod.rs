//! The JSON shapes of the REST API (docs/api.md) and their conversions to and from the services'
//! protobuf messages. Conversions are mechanical: every rule lives in a service. A reply that
//! breaks its service's contract (a required field missing, an unknown enum value) becomes a
//! 500 whose details stay in the log.

pub mod accounts;
pub mod catalog;
pub mod lists;
pub mod orders;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_proto::pb::common::{PageRequest, PageResponse};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::problem::ApiError;

/// Items a page holds when the client does not say.
pub const DEFAULT_LIMIT: u32 = 20;
/// Most items a page may hold.
pub const MAX_LIMIT: u32 = 100;

/// A service reply that breaks the service's own contract.
#[derive(Debug, thiserror::Error)]
#[error("malformed reply from a service: {0}")]
pub struct BadReply(pub &'static str);

impl From<BadReply> for ApiError {
    fn from(error: BadReply) -> Self {
        tracing::error!(%error, "cannot translate a service reply");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed on the server",
        )
    }
}

/// `value`, which the service's contract says is always there.
pub fn required<T>(value: Option<T>, what: &'static str) -> Result<T, BadReply> {
    value.ok_or(BadReply(what))
}

/// A UUID the service sent as a string.
pub fn uuid(raw: &str, what: &'static str) -> Result<Uuid, BadReply> {
    raw.parse().map_err(|_| BadReply(what))
}

/// A protobuf timestamp as a UTC time (RFC 3339 in JSON).
pub fn time(value: Option<prost_types::Timestamp>, what: &'static str) -> Result<DateTime<Utc>, BadReply> {
    optional_time(value, what)?.ok_or(BadReply(what))
}

/// A timestamp that may be absent.
pub fn optional_time(
    value: Option<prost_types::Timestamp>,
    what: &'static str,
) -> Result<Option<DateTime<Utc>>, BadReply> {
    value
        .map(|at| shop_platform::grpc::convert::from_timestamp(&at).ok_or(BadReply(what)))
        .transpose()
}

/// The cursor of the next page, `None` on the last one.
pub fn next_cursor(page: Option<PageResponse>) -> Option<String> {
    page.map(|page| page.next_cursor).filter(|cursor| !cursor.is_empty())
}

/// An empty JSON object, the reply of operations with nothing to say (`{}`).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Empty {}

/// A whole number read from JSON. JSON Schema, and so the OpenAPI document, counts `2.0` as
/// the integer 2, and clients that keep numbers as floating point send it so: it is accepted
/// like `2`. A fraction, or a number beyond `i64`, is refused when the body is read (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole(pub i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Whole;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Whole, E> {
                i64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Whole, E> {
                // 2^63 is exactly representable; every whole f64 below it in magnitude fits.
                const LIMIT: f64 = 9_223_372_036_854_775_808.0;
                if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Whole(v as i64))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `#[serde(deserialize_with)]` for an `i64` field that takes [`Whole`] numbers.
pub fn whole_i64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Whole::deserialize(deserializer).map(|whole| whole.0)
}

/// `#[serde(default, deserialize_with)]` for an `Option<i64>` field that takes [`Whole`] numbers.
pub fn whole_i64_opt<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Option::<Whole>::deserialize(deserializer).map(|whole| whole.map(|whole| whole.0))
}

/// A number of units: a whole number, at least 1. Zero, negative and fractional numbers are
/// refused when the body is read (400); `2.0` is 2 ([`Whole`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Whole")]
pub struct Quantity(u32);

impl Quantity {
    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<Whole> for Quantity {
    type Error = &'static str;

    fn try_from(raw: Whole) -> Result<Self, Self::Error> {
        u32::try_from(raw.0)
            .map_err(|_| "quantity must be a whole number from 1 to 4294967295")
            .and_then(Self::try_from)
    }
}

impl TryFrom<u32> for Quantity {
    type Error = &'static str;

    fn try_from(raw: u32) -> Result<Self, Self::Error> {
        if raw == 0 {
            Err("quantity must be at least 1")
        } else {
            Ok(Self(raw))
        }
    }
}

/// `?limit=&cursor=` of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Where to continue: the `next_cursor` of the previous page. Opaque.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page to ask the service for; a limit outside 1–100 is a 400.
    pub fn to_page(&self) -> Result<PageRequest, ApiError> {
        page(self.limit, self.cursor.as_deref())
    }
}

/// The page `limit` and `cursor` name; a limit outside 1–100 is a 400.
pub fn page(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_argument",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(PageRequest {
        limit,
        cursor: cursor.unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused() {
        assert_eq!(page(None, None).map(|page| page.limit), Ok(DEFAULT_LIMIT));
        assert_eq!(page(Some(1), None).map(|page| page.limit), Ok(1));
        assert_eq!(
            page(Some(100), Some("abc")).map(|page| page.cursor),
            Ok("abc".to_owned())
        );
        for limit in [0, 101, u32::MAX] {
            let error = page(Some(limit), None).err().map(|error| error.status);
            assert_eq!(error, Some(StatusCode::BAD_REQUEST), "limit {limit}");
        }
    }

    #[test]
    fn quantities_start_at_one() {
        assert!(Quantity::try_from(0).is_err());
        assert_eq!(Quantity::try_from(3).map(Quantity::get), Ok(3));
        assert!(serde_json::from_str::<Quantity>("-1").is_err());
        assert!(serde_json::from_str::<Quantity>("1.5").is_err());
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("2").ok(), Some(Quantity(2)));
        assert_eq!(serde_json::from_str::<Quantity>("2.0").ok(), Some(Quantity(2)));
        assert!(serde_json::from_str::<Quantity>("2.5").is_err());
        assert!(serde_json::from_str::<Quantity>("4294967296").is_err());
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_refused() {
        use super::catalog::{CreateProductRequest, SetStockRequest, UpdateProductRequest};
        let create = |price: &str, stock: &str| {
            serde_json::from_str::<CreateProductRequest>(&format!(
                r#"{{"name": "Lamp", "description": "", "price": {price}, "stock": {stock}}}"#
            ))
            .map(|body| (body.price, body.stock))
            .ok()
        };
        assert_eq!(create("12900", "5"), Some((12_900, 5)));
        assert_eq!(create("12900.0", "5.0"), Some((12_900, 5)));
        assert_eq!(create("1e3", "0"), Some((1_000, 0)));
        assert_eq!(create("12.5", "5"), None);
        assert_eq!(create("12900", "\"5\""), None);
        assert_eq!(create("1e300", "5"), None);
        let stock = |body: &str| serde_json::from_str::<SetStockRequest>(body).map(|b| b.stock).ok();
        assert_eq!(stock(r#"{"stock": 7.0}"#), Some(7));
        assert_eq!(stock(r#"{"stock": 7.25}"#), None);
        let price = |body: &str| serde_json::from_str::<UpdateProductRequest>(body).map(|b| b.price).ok();
        assert_eq!(price("{}"), Some(None));
        assert_eq!(price(r#"{"price": null}"#), Some(None));
        assert_eq!(price(r#"{"price": 3.0}"#), Some(Some(3)));
        assert_eq!(price(r#"{"price": 0.5}"#), None);
    }

    #[test]
    fn timestamps_become_utc_times() {
        let at = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000_000,
        };
        let json = serde_json::to_value(time(Some(at), "t").ok()).unwrap_or_default();
        assert_eq!(json, "2023-11-14T22:13:20.005Z");
        assert!(time(None, "t").is_err());
        assert_eq!(optional_time(None, "t").ok(), Some(None));
    }
}
