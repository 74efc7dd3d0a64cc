//! The catalog's tables as sea-orm entities.

pub mod product;
pub mod release;
pub mod reservation;
pub mod reservation_line;
