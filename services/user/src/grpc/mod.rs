//! The gRPC edge of the user service: protobuf in, domain calls, protobuf out. Errors leave as
//! [`ServiceError`]s, turned into statuses by the platform's one mapping.

mod cart;
mod users;
mod wishlist;

pub use cart::CartApi;
pub use users::UserApi;
pub use wishlist::WishlistApi;

pub use shop_platform::grpc::convert::{from_timestamp, timestamp};
use shop_platform::grpc::{error::ServiceError, identity::Role};
use shop_proto::pb::{common, user as pb};
use tonic::Request;

use crate::{entity::user, sessions::TokenPair};

/// The metadata entry in which the gateway forwards the client's IP address (from its
/// connection, or the ingress's header), for the per-client limit on verification mails.
pub const CLIENT_IP_METADATA: &str = "x-shop-client-ip";

/// Who is asking, for per-client limits: the forwarded client address, else the peer address
/// (a direct caller inside the mesh).
pub fn client_of<T>(request: &Request<T>) -> Option<String> {
    let forwarded = request
        .metadata()
        .get(CLIENT_IP_METADATA)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty() && value.len() <= 64);
    match forwarded {
        Some(client) => Some(client.to_owned()),
        None => request.remote_addr().map(|addr| addr.ip().to_string()),
    }
}

/// [`client_of`] for the password throttle, which needs some client: a call with neither a
/// forwarded nor a peer address (an in-process transport) counts as one client of its own.
pub fn client_or_unknown<T>(request: &Request<T>) -> String {
    client_of(request).unwrap_or_else(|| "unknown".to_owned())
}

/// The protobuf enum value of a role.
pub fn role_to_pb(role: Role) -> common::Role {
    match role {
        Role::Customer => common::Role::Customer,
        Role::Seller => common::Role::Seller,
        Role::Admin => common::Role::Admin,
    }
}

/// The role a request names; INVALID_ARGUMENT for ROLE_UNSPECIFIED or an unknown value.
pub fn role_from_pb(raw: i32) -> Result<Role, ServiceError> {
    match common::Role::try_from(raw) {
        Ok(common::Role::Customer) => Ok(Role::Customer),
        Ok(common::Role::Seller) => Ok(Role::Seller),
        Ok(common::Role::Admin) => Ok(Role::Admin),
        _ => Err(ServiceError::invalid("role: customer, seller or admin")),
    }
}

/// An account as its owner and admins see it.
pub fn user_to_pb(user: &user::Model) -> Result<pb::User, ServiceError> {
    Ok(pb::User {
        id: user.id.to_string(),
        email: user.email.clone(),
        name: user.name.clone(),
        phone: user.phone.clone(),
        address: user.address.clone(),
        role: role_to_pb(crate::users::role(user)?).into(),
        created_at: Some(timestamp(user.created_at)),
    })
}

/// A token pair.
pub fn tokens_to_pb(pair: TokenPair) -> pb::TokenPair {
    pb::TokenPair {
        access_token: pair.access.token,
        token_type: "Bearer".to_owned(),
        expires_in_seconds: u32::try_from(pair.access.expires_in.as_secs()).unwrap_or(u32::MAX),
        refresh_token: pair.refresh_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unspecified_is_refused() {
        for role in [Role::Customer, Role::Seller, Role::Admin] {
            assert_eq!(role_from_pb(role_to_pb(role).into()).ok(), Some(role));
        }
        assert!(role_from_pb(0).is_err());
        assert!(role_from_pb(42).is_err());
    }

    #[test]
    fn the_forwarded_client_address_wins() {
        let mut request = Request::new(());
        assert_eq!(client_of(&request), None);
        request.metadata_mut().insert(
            CLIENT_IP_METADATA,
            tonic::metadata::MetadataValue::from_static("203.0.113.7"),
        );
        assert_eq!(client_of(&request).as_deref(), Some("203.0.113.7"));
    }
}
