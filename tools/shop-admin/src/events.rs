//! The payloads of the stock queues and of the queue of placed orders
//! (shop/events/v1/events.proto), decoded for reading by the message's kind (its AMQP `type`).

use std::fmt::Debug;

use prost::Name;
use shop_platform::queue::bundle;
use shop_proto::{is_message_type, pb::events};

/// Reads a payload when the kind names its message type, else `None`.
type Reader = fn(&str, &[u8]) -> Option<String>;

/// Every message the queues carry.
const READERS: [Reader; 6] = [
    decoded::<events::ReserveStock>,
    decoded::<events::ReleaseStock>,
    decoded::<events::StockReserved>,
    decoded::<events::StockRejected>,
    decoded::<events::StockReleased>,
    decoded::<events::OrderPlaced>,
];

/// The payload of a message of `kind`, decoded and printed field by field; or why it cannot be.
/// A bundle (several messages in one, see `shop.events.v1.Bundle`) lists its messages, each
/// with its id and kind.
pub fn describe(kind: &str, payload: &[u8]) -> String {
    if is_message_type::<events::Bundle>(kind) {
        // Opened as the consumers open it, so a bundle they would refuse reads as refused.
        return match bundle::open_payload(payload) {
            Ok(messages) => {
                let mut text = format!("a bundle of {} messages:", messages.len());
                for message in messages {
                    text.push_str(&format!(
                        "\n    {} {}: {}",
                        message.id,
                        message.kind,
                        describe(&message.kind, &message.payload)
                    ));
                }
                text
            }
            Err(poison) => format!("undecodable as {kind} ({} bytes): {}", payload.len(), poison.detail),
        };
    }
    READERS
        .iter()
        .find_map(|read| read(kind, payload))
        .unwrap_or_else(|| format!("unknown kind {kind:?}: {} bytes", payload.len()))
}

fn decoded<M: Name + Default + Debug>(kind: &str, payload: &[u8]) -> Option<String> {
    if !is_message_type::<M>(kind) {
        return None;
    }
    Some(match M::decode(payload) {
        Ok(message) => format!("{message:?}"),
        // A poison message is often exactly this: say so rather than fail the listing.
        Err(error) => format!("undecodable as {kind} ({} bytes): {error}", payload.len()),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use shop_proto::message_type;

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
        let text = describe(&message_type::<events::ReserveStock>(), &reserve.encode_to_vec());
        assert!(
            text.contains("o-1") && text.contains("p-1") && text.contains("quantity: 2"),
            "{text}"
        );

        let text = describe(&message_type::<events::StockReserved>(), &[0xff, 0xff]);
        assert!(
            text.starts_with("undecodable as shop.events.v1.StockReserved"),
            "{text}"
        );
        assert_eq!(describe("x.Mystery", b"abc"), "unknown kind \"x.Mystery\": 3 bytes");
    }

    #[test]
    fn a_bundle_lists_its_messages() {
        let reserved = events::StockReserved { order_id: "o-7".into() };
        let bundle = events::Bundle {
            messages: vec![
                events::BundledMessage {
                    id: "m-1".into(),
                    r#type: message_type::<events::StockReserved>(),
                    payload: reserved.encode_to_vec(),
                    headers: Default::default(),
                },
                events::BundledMessage {
                    id: "m-2".into(),
                    r#type: "x.Mystery".into(),
                    payload: b"abc".to_vec(),
                    headers: Default::default(),
                },
            ],
        };
        let text = describe(&message_type::<events::Bundle>(), &bundle.encode_to_vec());
        assert!(text.starts_with("a bundle of 2 messages:"), "{text}");
        assert!(
            text.contains("m-1 shop.events.v1.StockReserved: StockReserved { order_id: \"o-7\" }"),
            "{text}"
        );
        assert!(text.contains("m-2 x.Mystery: unknown kind"), "{text}");
        let text = describe(&message_type::<events::Bundle>(), &[0xff]);
        assert!(text.starts_with("undecodable as shop.events.v1.Bundle"), "{text}");
        // An empty bundle is refused by the consumers, so it reads as refused here too.
        let text = describe(
            &message_type::<events::Bundle>(),
            &events::Bundle::default().encode_to_vec(),
        );
        assert!(text.contains("a bundle without messages"), "{text}");
    }
}
