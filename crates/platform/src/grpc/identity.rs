//! The caller's identity inside the mesh. The gateway verifies the access token and asserts the
//! user in the mesh token of each call it makes (see [`super::mesh`]); the server verifies that
//! token before any service runs and hands the user to the service, which reads it here. A
//! service calling another for the same user attaches the [`Caller`] to its request, and its
//! channel forwards the proof it received.
//!
//! The `x-shop-user-*` metadata entries are never read: anyone can send them.

use std::{fmt, str::FromStr, sync::Arc};

use tonic::Request;
use uuid::Uuid;

use super::{error::ServiceError, mesh::MeshCaller};

/// Metadata entries that once carried the caller's identity unproven; the server removes them.
pub const UNPROVEN_IDENTITY_METADATA: [&str; 3] = ["x-shop-user-id", "x-shop-user-role", "x-shop-session-id"];

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
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's role when the token was issued.
    pub role: Role,
    /// The session the token belongs to, when the gateway sent it.
    pub session_id: Option<Uuid>,
    /// The mesh token this identity arrived with (forwarded on calls made for this user).
    proof: Option<Arc<str>>,
}

/// Equal when the same user, role and session (however proven).
impl PartialEq for Caller {
    fn eq(&self, other: &Self) -> bool {
        (self.user_id, self.role, self.session_id) == (other.user_id, other.role, other.session_id)
    }
}

impl Eq for Caller {}

impl Caller {
    /// A caller as the gateway (or a test acting as one) asserts it.
    pub fn new(user_id: Uuid, role: Role, session_id: Option<Uuid>) -> Self {
        Self {
            user_id,
            role,
            session_id,
            proof: None,
        }
    }

    /// The same caller, proven by `token`.
    pub(super) fn with_proof(mut self, token: &str) -> Self {
        self.proof = Some(Arc::from(token));
        self
    }

    /// The mesh token this identity was received with, if it was.
    pub(super) fn proof(&self) -> Option<&str> {
        self.proof.as_deref()
    }

    /// The end user of `request`, as its verified mesh token states it.
    pub fn optional<T>(request: &Request<T>) -> Option<Self> {
        request
            .extensions()
            .get::<MeshCaller>()
            .and_then(|caller| caller.user.clone())
    }

    /// The signed-in caller of `request`, or UNAUTHENTICATED.
    pub fn required<T>(request: &Request<T>) -> Result<Self, ServiceError> {
        Self::optional(request).ok_or_else(ServiceError::unauthenticated)
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

    /// Makes an outgoing request on this caller's behalf: the channel puts the user in its
    /// mesh token (asserted by the gateway, forwarded with its proof by a service).
    pub fn attach<T>(&self, request: &mut Request<T>) {
        request.extensions_mut().insert(self.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unproven_metadata_is_anonymous() {
        let mut request = Request::new(());
        assert!(Caller::required(&request).is_err());
        let metadata = request.metadata_mut();
        for (key, value) in UNPROVEN_IDENTITY_METADATA.into_iter().zip([
            "0195c1a0-0000-7000-8000-000000000000",
            "admin",
            "0195c1a0-0000-7000-8000-000000000001",
        ]) {
            metadata.insert(key, value.parse().unwrap_or_else(|_| unreachable!()));
        }
        assert!(Caller::optional(&request).is_none());
    }

    #[test]
    fn roles_are_enforced() {
        let caller = Caller::new(Uuid::new_v4(), Role::Customer, None);
        assert!(caller.require_role(&[Role::Seller, Role::Admin]).is_err());
        assert!(caller.require_role(&[Role::Customer]).is_ok());
    }
}
