//! The payloads of the stock queues and of the queue of placed orders
//! (shop/events/v1/events.proto), decoded for reading by the message's kind (its AMQP `type`).

use std::fmt::Debug;

use shop_order::{
    placed::ORDER_PLACED,
    stock::{RELEASE_STOCK, RESERVE_STOCK, STOCK_REJECTED, STOCK_RELEASED, STOCK_RESERVED},
};
use shop_proto::pb::events;

/// The payload of a message of `kind`, decoded and printed field by field; or why it cannot be.
pub fn describe(kind: &str, payload: &[u8]) -> String {
    match kind {
        RESERVE_STOCK => decoded::<events::ReserveStock>(kind, payload),
        RELEASE_STOCK => decoded::<events::ReleaseStock>(kind, payload),
        STOCK_RESERVED => decoded::<events::StockReserved>(kind, payload),
        STOCK_REJECTED => decoded::<events::StockRejected>(kind, payload),
        STOCK_RELEASED => decoded::<events::StockReleased>(kind, payload),
        ORDER_PLACED => decoded::<events::OrderPlaced>(kind, payload),
        _ => format!("unknown kind {kind:?}: {} bytes", payload.len()),
    }
}

fn decoded<M: prost::Message + Default + Debug>(kind: &str, payload: &[u8]) -> String {
    match M::decode(payload) {
        Ok(message) => format!("{message:?}"),
        // A poison message is often exactly this: say so rather than fail the listing.
        Err(error) => format!("undecodable as {kind} ({} bytes): {error}", payload.len()),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn known_kinds_are_decoded_and_others_described() {
        let reserve = events::ReserveStock {
            order_id: "o-1".into(),
            lines: vec![events::StockLine {
                product_id: "p-1".into(),
                quantity: 2,
            }],
        };
        let text = describe(RESERVE_STOCK, &reserve.encode_to_vec());
        assert!(
            text.contains("o-1") && text.contains("p-1") && text.contains("quantity: 2"),
            "{text}"
        );

        let text = describe(STOCK_RESERVED, &[0xff, 0xff]);
        assert!(
            text.starts_with("undecodable as shop.events.v1.StockReserved"),
            "{text}"
        );
        assert_eq!(describe("x.Mystery", b"abc"), "unknown kind \"x.Mystery\": 3 bytes");
    }
}
