//! The answer to each applied command, as the order service reads it on `stock.results`.

use prost::Name;
use shop_proto::pb::events;

use super::{command::Command, ledger::Outcome};

/// The message type and encoded payload answering `command`, which ended in `outcome`.
pub fn answer(command: &Command, outcome: &Outcome) -> (String, Vec<u8>) {
    let order_id = command.order_id().to_string();
    match (command, outcome) {
        (Command::Release { release_id, .. }, _) => typed(events::StockReleased {
            order_id,
            release_id: release_id.to_string(),
        }),
        (_, Outcome::Rejected(short) | Outcome::AlreadyRejected(short)) => typed(events::StockRejected {
            order_id,
            short: short
                .iter()
                .map(|shortage| events::StockShortage {
                    product_id: shortage.product_id.to_string(),
                    requested: u32::try_from(shortage.requested).unwrap_or(u32::MAX),
                    available: shortage.available,
                })
                .collect(),
        }),
        _ => typed(events::StockReserved { order_id }),
    }
}

/// `message` encoded, with the type it is published under.
fn typed<M: Name>(message: M) -> (String, Vec<u8>) {
    (shop_proto::message_type::<M>(), message.encode_to_vec())
}
