//! The conversions every gRPC adapter needs between protobuf fields and domain types, written
//! once: times and ids. Protobuf types stop at the adapters; these are what they parse with.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::ServiceError;

/// A time as a protobuf timestamp.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 10^9 (2 * 10^9 only inside a leap second, which UTC times here never are).
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(999_999_999),
    }
}

/// A time from a protobuf timestamp; `None` when it is out of range (negative nanos, say).
pub fn from_timestamp(at: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)
}

/// The UUID in request field `field`, or INVALID_ARGUMENT naming the field (and at most 40
/// characters of what was sent). Surrounding white space is ignored.
pub fn parse_uuid(raw: &str, field: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| ServiceError::invalid(format!("{field} must be a UUID, not {}", echo(raw, 40))))
}

/// `raw` quoted for an error message, cut after `max_chars` characters: a caller's input is
/// echoed, never in full (Debug formatting ignores a precision such as `{:.40?}`).
pub fn echo(raw: &str, max_chars: usize) -> String {
    let shown: String = raw.chars().take(max_chars).collect();
    if shown.len() < raw.len() {
        format!("{shown:?}…")
    } else {
        format!("{shown:?}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn timestamps_round_trip_and_invalid_ones_are_none() {
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap_or_default();
        assert_eq!(from_timestamp(&timestamp(at)), Some(at));
        assert_eq!(from_timestamp(&prost_types::Timestamp { seconds: 0, nanos: -1 }), None);
    }

    #[test]
    fn ids_are_parsed_and_bad_ones_name_their_field() {
        let id = Uuid::new_v4();
        assert_eq!(parse_uuid(&format!(" {id} "), "product_id").ok(), Some(id));
        let refused = parse_uuid(&"x".repeat(100), "product_id").unwrap_err();
        assert_eq!(refused.machine_code(), "invalid_argument");
        let message = refused.to_string();
        assert!(message.starts_with("product_id must be a UUID"), "{message}");
        assert!(message.len() < 90, "what was sent is cut: {message}");
    }
}
