//! The user service's integration tests, against real PostgreSQL, Redis and SMTP servers on
//! loopback, through real gRPC clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod bought;
mod embedded;
mod fake_catalog;
mod helpers;
mod sessions;
mod signup;
mod wishlist_cart;
