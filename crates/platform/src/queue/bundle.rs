//! Bundles: several messages for one queue in one broker message (`shop.events.v1.Bundle`).
//!
//! On RabbitMQ a message costs its publisher confirm, a write to the quorum queue's log, a
//! delivery and an acknowledgement (another write), whatever its size; a reservation is a few
//! dozen bytes. So the outbox relay packs the messages of one pass that go to the same queue
//! into bundles ([`pack`]), and the consumer runner opens them ([`open`]) and handles each
//! message as if it had come alone (see [`super::runner`]). Only the broker sees bundles: the
//! outbox holds one row per message, and handlers one message at a time.

use std::collections::BTreeMap;

use prost::Message as _;
use shop_proto::{is_message_type, message_type, pb::events};

use super::{Message, runner::Poison};

/// The most messages one bundle holds unless told otherwise ([`crate::outbox::RelayOptions`]).
pub const DEFAULT_BUNDLE_SIZE: usize = 64;

/// Packs `messages` (at least two, all for one queue) into one bundle, keeping their order.
/// A single message goes out as it is: a bundle of one would only cost its envelope.
pub fn pack(mut messages: Vec<Message>) -> Message {
    if messages.len() == 1
        && let Some(message) = messages.pop()
    {
        return message;
    }
    let bundle = events::Bundle {
        messages: messages
            .into_iter()
            .map(|message| events::BundledMessage {
                id: message.id,
                r#type: message.kind,
                payload: message.payload,
                headers: message.headers.into_iter().collect(),
            })
            .collect(),
    };
    Message {
        id: uuid::Uuid::now_v7().to_string(),
        kind: message_type::<events::Bundle>(),
        payload: bundle.encode_to_vec(),
        headers: BTreeMap::new(),
    }
}

/// `messages` (all for one queue) as they go to the broker: in bundles of at most `size`
/// (at least 1; 1 bundles nothing), in their order.
pub fn pack_all(messages: Vec<Message>, size: usize) -> Vec<Message> {
    let size = size.max(1);
    if size == 1 {
        return messages;
    }
    let mut packed = Vec::with_capacity(messages.len().div_ceil(size));
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        packed.push(pack(messages.by_ref().take(size).collect()));
    }
    packed
}

/// Whether `message` is a bundle.
pub fn is_bundle(message: &Message) -> bool {
    is_message_type::<events::Bundle>(&message.kind)
}

/// The messages of a bundle, in order; poison when it cannot be read or holds none.
pub fn open(message: &Message) -> Result<Vec<Message>, Poison> {
    open_payload(&message.payload)
}

/// [`open`] for a bundle's payload alone (what a tool reading a dead-letter queue holds).
pub fn open_payload(payload: &[u8]) -> Result<Vec<Message>, Poison> {
    let bundle = events::Bundle::decode(payload)
        .map_err(|error| Poison::new("undecodable_bundle", format!("a bundle that cannot be read: {error}")))?;
    if bundle.messages.is_empty() {
        return Err(Poison::new("undecodable_bundle", "a bundle without messages"));
    }
    Ok(bundle
        .messages
        .into_iter()
        .map(|part| Message {
            id: part.id,
            kind: part.r#type,
            payload: part.payload,
            headers: part.headers.into_iter().collect(),
        })
        .collect())
}

/// The messages a broker message carries: a bundle's, or the message itself.
pub fn unbundle(message: Message) -> Result<Vec<Message>, Poison> {
    if is_bundle(&message) {
        open(&message)
    } else {
        Ok(vec![message])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn message(id: &str) -> Message {
        Message {
            id: id.to_owned(),
            kind: "shop.events.v1.ReserveStock".to_owned(),
            payload: id.as_bytes().to_vec(),
            headers: BTreeMap::from([("traceparent".to_owned(), format!("00-{id}"))]),
        }
    }

    #[test]
    fn a_bundle_opens_to_its_messages_in_order() {
        let messages = vec![message("a"), message("b"), message("c")];
        let bundle = pack(messages.clone());
        assert!(is_bundle(&bundle));
        assert_eq!(bundle.kind, "shop.events.v1.Bundle");
        assert!(uuid::Uuid::parse_str(&bundle.id).is_ok(), "{}", bundle.id);
        assert_eq!(open(&bundle).unwrap(), messages);
    }

    #[test]
    fn messages_go_out_in_bundles_of_at_most_the_size_in_order() {
        let messages: Vec<Message> = ["a", "b", "c", "d", "e"].map(message).into();
        let packed = pack_all(messages.clone(), 2);
        assert_eq!(packed.len(), 3);
        let opened: Vec<Message> = packed.iter().flat_map(|one| unbundle(one.clone()).unwrap()).collect();
        assert_eq!(opened, messages);
        assert_eq!(packed[2], message("e"), "the last one alone goes as it is");
        assert_eq!(pack_all(messages.clone(), 1), messages, "a size of 1 bundles nothing");
        assert_eq!(pack_all(messages.clone(), 0), messages);
    }

    #[test]
    fn one_message_goes_out_as_it_is() {
        let packed = pack(vec![message("a")]);
        assert_eq!(packed, message("a"));
        assert!(!is_bundle(&packed));
    }

    #[test]
    fn a_bundle_that_cannot_be_read_or_is_empty_is_poison() {
        let mut bundle = pack(vec![message("a"), message("b")]);
        bundle.payload = vec![0xff, 0xff, 0xff];
        assert_eq!(open(&bundle).unwrap_err().reason, "undecodable_bundle");
        bundle.payload = Vec::new();
        assert_eq!(open(&bundle).unwrap_err().reason, "undecodable_bundle");
    }
}
