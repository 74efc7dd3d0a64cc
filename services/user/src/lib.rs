//! The user service: accounts, email verification, sessions and token revocation, profiles,
//! wishlists and carts (`shop.user.v1`). A library, so the `user` binary and the one-process
//! `shop` binary start it the same way.
//!
//! It consumes one queue: `OrderPlaced`, from the order service, after which the cart lines an
//! order bought leave the cart (see `bought`).
//!
//! What it keeps where:
//! - the database (its own schema or SQLite file): accounts (argon2id hashes), sessions, refresh
//!   tokens (SHA-256 digests), wishlist items and cart lines;
//! - the shared cache, under `user:`: verification codes (salted digests) with their attempt
//!   counters, verification tokens, send-rate and sign-in failure counters, and the revocation
//!   store read by CheckTokenRevoked (revoked `jti`s until their expiry, ended sessions for one
//!   access-token lifetime).
//!
//! Request metadata read besides the identity of `shop.common.v1`: `x-shop-client-ip`, the
//! client's address as the gateway saw it, which keys the per-client limit on verification mails
//! (without it, the peer address of the call is used).
//!
//! Limits (configurable, see [`UserConfig`]): a code lives 5 minutes and allows 5 attempts; one
//! mail per address per minute and 5 per hour, 30 verification requests per client per hour;
//! 5 failed password checks per address per 15 minutes; quantities 1 to 1000; 100 wishlist items
//! and 100 cart lines per user (so a listing's products come in one catalog call).

mod accounts;
mod admin;
mod bought;
mod cart;
mod catalog;
pub mod config;
mod context;
mod domain;
pub mod entity;
mod grpc;
pub mod key_file;
mod login;
mod mail;
pub mod migration;
mod passwords;
mod pricing;
mod secrets;
mod service;
mod sessions;
mod signup;
mod store;
mod throttle;
mod tokens;
mod users;
mod verification;
mod wishlist;

pub use config::UserConfig;
pub use service::UserService;
