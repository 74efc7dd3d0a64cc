//! gRPC plumbing shared by every service: the server builder (health, reflection, tracing,
//! timeouts, graceful shutdown) and the client builder (discovery, balancing, deadlines,
//! trace context).

pub mod client;
pub mod convert;
pub mod discovery;
pub mod error;
pub mod identity;
pub mod in_process;
pub mod mesh;
pub mod server;
pub mod target;
