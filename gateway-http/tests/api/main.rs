//! The gateway's REST API driven in process with `oneshot`: edge validation that needs no
//! service, the OpenAPI document's coverage of the contract and its caching, the API reference
//! page and its embedded assets, and the translation to and from
//! the services against fake gRPC services, the edge read cache of the catalog reads, and the
//! rate limits counted in the real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connections;
mod docs;
mod edge;
mod fake;
mod helpers;
mod limits;
mod openapi;
mod read_cache;
mod upstream;
