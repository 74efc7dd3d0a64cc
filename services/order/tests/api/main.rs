//! Integration tests of the order service against real PostgreSQL and RabbitMQ, with the real
//! catalog service (and its stock worker) running beside it, and the real user service for
//! orders from the cart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cart;
mod catalog;
mod embedded;
mod faults;
mod flow;
mod from_cart;
mod helpers;
mod load;
mod payments;
mod placing;
mod queries;
mod retention;
mod windows;
