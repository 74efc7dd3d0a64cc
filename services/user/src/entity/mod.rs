//! The user service's tables as sea-orm entities (created by [`crate::migration`]). Rows that
//! belong to a user reference it with `ON DELETE CASCADE`, so deleting an account removes its
//! sessions, wishlist and cart with it.

pub mod cart_item;
pub mod refresh_token;
pub mod session;
pub mod user;
pub mod wishlist_item;
