//! The caller's identity inside the mesh. The gateway verifies the access token and forwards
//! the caller as metadata (`x-shop-user-id`, `x-shop-user-role`, `x-shop-session-id`); services
//! read it here, and forward it unchanged when they call another service for the same user.
//! The metadata is trusted only because the services' ports are never exposed outside the mesh.

use std::{fmt, str::FromStr};

use tonic::{Request, metadata::MetadataMap};
use uuid::Uuid;

use super::error::ServiceError;

/// Metadata entry: the caller's user id.
pub const USER_ID_METADATA: &str = "x-shop-user-id";
/// Metadata entry: the caller's role.
pub const ROLE_METADATA: &str = "x-shop-user-role";
/// Metadata entry: the caller's session id.
pub const SESSION_ID_METADATA: &str = "x-shop-session-id";

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Buys things.
    Customer,
    /// Also sells: creates and manages their own products.
    Seller,
    /// Manages everything.
    Admin,
}

impl Role {
    /// The wire name: `customer`, `seller`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Seller => "seller",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "customer" => Ok(Self::Customer),
            "seller" => Ok(Self::Seller),
            "admin" => Ok(Self::Admin),
            other => Err(format!("{other:?} is not a role (customer, seller, admin)")),
        }
    }
}

/// A signed-in caller, as the gateway verified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's role when the token was issued.
    pub role: Role,
    /// The session the token belongs to, when the gateway sent it.
    pub session_id: Option<Uuid>,
}

impl Caller {
    /// The caller of `request`, if the request carries a well-formed identity.
    pub fn from_metadata(metadata: &MetadataMap) -> Option<Self> {
        let get = |key| metadata.get(key).and_then(|value| value.to_str().ok());
        let user_id = get(USER_ID_METADATA)?.parse().ok()?;
        let role = get(ROLE_METADATA)?.parse().ok()?;
        let session_id = get(SESSION_ID_METADATA).and_then(|raw| raw.parse().ok());
        Some(Self {
            user_id,
            role,
            session_id,
        })
    }

    /// The signed-in caller of `request`, or UNAUTHENTICATED.
    pub fn required<T>(request: &Request<T>) -> Result<Self, ServiceError> {
        Self::from_metadata(request.metadata()).ok_or_else(ServiceError::unauthenticated)
    }

    /// PERMISSION_DENIED unless the caller has one of `roles`.
    pub fn require_role(&self, roles: &[Role]) -> Result<(), ServiceError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!("a {} may not do this", self.role)))
        }
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Writes this identity into an outgoing request's metadata (service-to-service calls made
    /// on the caller's behalf).
    pub fn attach<T>(&self, request: &mut Request<T>) {
        let metadata = request.metadata_mut();
        if let Ok(value) = self.user_id.to_string().parse() {
            metadata.insert(USER_ID_METADATA, value);
        }
        if let Ok(value) = self.role.as_str().parse() {
            metadata.insert(ROLE_METADATA, value);
        }
        if let Some(session) = self.session_id
            && let Ok(value) = session.to_string().parse()
        {
            metadata.insert(SESSION_ID_METADATA, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_metadata() {
        let caller = Caller {
            user_id: Uuid::new_v4(),
            role: Role::Seller,
            session_id: Some(Uuid::new_v4()),
        };
        let mut request = Request::new(());
        caller.attach(&mut request);
        assert_eq!(Caller::required(&request).ok(), Some(caller));
    }

    #[test]
    fn missing_or_malformed_identity_is_anonymous() {
        let mut request = Request::new(());
        assert!(Caller::required(&request).is_err());
        request.metadata_mut().insert(
            USER_ID_METADATA,
            "not-a-uuid".parse().unwrap_or_else(|_| unreachable!()),
        );
        request
            .metadata_mut()
            .insert(ROLE_METADATA, "admin".parse().unwrap_or_else(|_| unreachable!()));
        assert!(Caller::from_metadata(request.metadata()).is_none());
    }

    #[test]
    fn roles_are_enforced() {
        let caller = Caller {
            user_id: Uuid::new_v4(),
            role: Role::Customer,
            session_id: None,
        };
        assert!(caller.require_role(&[Role::Seller, Role::Admin]).is_err());
        assert!(caller.require_role(&[Role::Customer]).is_ok());
    }
}
