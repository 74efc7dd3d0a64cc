//! What every shop service shares, written once: typed configuration, telemetry, database
//! connections and migrations, a cache, a work queue, a transactional outbox, and the gRPC
//! server and client builders (with discovery and client-side balancing).

/// Every shop binary (and test) allocates with [`shop_allocator::ShopAllocator`]: memory a
/// burst took goes back to the system.
#[global_allocator]
static ALLOCATOR: shop_allocator::ShopAllocator = shop_allocator::ShopAllocator;

pub mod backoff;
pub mod bounded;
pub mod cache;
pub mod config;
pub mod db;
pub mod fault;
pub mod group_commit;
pub mod grpc;
pub mod health;
pub mod outbox;
pub mod paging;
pub mod probe;
pub mod queue;
pub mod retention;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
