//! The answer to each applied command, as the order service reads it on `stock.results`.

use prost::Message as _;
use shop_proto::pb::events;

use super::{
    command::{Command, REJECTED_KIND, RELEASED_KIND, RESERVED_KIND},
    ledger::Outcome,
};

/// The message type and encoded payload answering `command`, which ended in `outcome`.
pub fn answer(command: &Command, outcome: &Outcome) -> (&'static str, Vec<u8>) {
    let order_id = command.order_id().to_string();
    match (command, outcome) {
        (Command::Release { release_id, .. }, _) => (
            RELEASED_KIND,
            events::StockReleased {
                order_id,
                release_id: release_id.to_string(),
            }
            .encode_to_vec(),
        ),
        (_, Outcome::Rejected(short) | Outcome::AlreadyRejected(short)) => (
            REJECTED_KIND,
            events::StockRejected {
                order_id,
                short: short
                    .iter()
                    .map(|shortage| events::StockShortage {
                        product_id: shortage.product_id.to_string(),
                        requested: u32::try_from(shortage.requested).unwrap_or(u32::MAX),
                        available: shortage.available,
                    })
                    .collect(),
            }
            .encode_to_vec(),
        ),
        _ => (RESERVED_KIND, events::StockReserved { order_id }.encode_to_vec()),
    }
}
