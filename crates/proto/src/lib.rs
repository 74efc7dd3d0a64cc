//! The generated protobuf messages and gRPC stubs of every shop package, compiled once for the
//! whole workspace. Modules mirror the protobuf packages (`shop.user.v1` is
//! [`shop::user::v1`]); [`pb`] re-exports them under short names. [`queues`] names the queues
//! the `shop.events.v1` messages travel on, and [`message_type`] the AMQP `type` they travel
//! under.

mod names;
pub mod queues;

pub use names::{is_message_type, message_type};

/// The generated code, one module per protobuf package.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod shop {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("shop.common.v1");
        }
    }
    pub mod user {
        pub mod v1 {
            tonic::include_proto!("shop.user.v1");
        }
    }
    pub mod catalog {
        pub mod v1 {
            tonic::include_proto!("shop.catalog.v1");
        }
    }
    pub mod order {
        pub mod v1 {
            tonic::include_proto!("shop.order.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("shop.events.v1");
        }
    }
}

/// Short names: `pb::user::UserServiceClient`, `pb::events::ReserveStock`, …
pub mod pb {
    pub use crate::shop::{catalog::v1 as catalog, common::v1 as common, events::v1 as events};
    pub use crate::shop::{order::v1 as order, user::v1 as user};
}

/// The encoded `FileDescriptorSet` of every shop package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shop_descriptor");
