//! Who may see an order, and the ids requests name. Another user's order is NOT_FOUND, never
//! PERMISSION_DENIED, so that order ids reveal nothing.

use shop_platform::grpc::{error::ServiceError, identity::Caller};

use crate::store::OrderRecord;

/// Whether `caller` may see the order: its owner or an admin.
pub fn may_see(caller: &Caller, record: &OrderRecord) -> bool {
    caller.is_admin() || record.order.user_id == caller.user_id
}

/// NOT_FOUND for an order.
pub fn not_found() -> ServiceError {
    ServiceError::not_found("no such order")
}
