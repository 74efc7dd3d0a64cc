//! What each gRPC call made while serving a request carries besides its message: the request
//! id (`x-request-id`, so one id follows the request through every service's log) and, for a
//! signed-in caller, the verified identity. Trace context and deadlines are added by the
//! platform's channel.

use std::convert::Infallible;

use axum::{extract::FromRequestParts, http::request::Parts};
use shop_platform::grpc::identity::Caller;
use tonic::metadata::{Ascii, MetadataValue};

/// The request id metadata entry (and HTTP header).
const REQUEST_ID: &str = "x-request-id";

/// Builds the gRPC requests of one HTTP request.
#[derive(Debug, Clone, Default)]
pub struct Call {
    request_id: Option<MetadataValue<Ascii>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        Ok(Self { request_id })
    }
}

impl Call {
    /// A request made for nobody in particular (sign-up, sign-in, public reads).
    pub fn anonymous<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(id) = &self.request_id {
            request.metadata_mut().insert(REQUEST_ID, id.clone());
        }
        request
    }

    /// A request made for `caller`.
    pub fn for_caller<T>(&self, caller: &Caller, message: T) -> tonic::Request<T> {
        let mut request = self.anonymous(message);
        caller.attach(&mut request);
        request
    }

    /// A request made for `caller` when signed in, anonymous otherwise.
    pub fn for_maybe<T>(&self, caller: Option<&Caller>, message: T) -> tonic::Request<T> {
        match caller {
            Some(caller) => self.for_caller(caller, message),
            None => self.anonymous(message),
        }
    }
}
