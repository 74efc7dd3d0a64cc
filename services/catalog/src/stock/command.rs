//! The work the reservation worker receives: `ReserveStock` and `ReleaseStock` messages decoded
//! and checked into [`Command`]s. A message that fails here can never succeed (wrong type,
//! undecodable payload, malformed ids, zero quantities), so it goes to the dead-letter queue at
//! once instead of being retried.

use prost::Message as _;
use shop_platform::queue::Message;
use shop_proto::{is_message_type, pb::events};
use uuid::Uuid;

/// Most lines one message may carry; a larger one is refused rather than locking half the
/// catalog in one transaction.
pub const MAX_LINES: usize = 1_000;

/// Which of the two inbound queues a consumer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// `stock.reserve`: ReserveStock.
    Reserve,
    /// `stock.release`: ReleaseStock.
    Release,
}

impl Work {
    /// Whether `kind` is the message type expected on this queue.
    pub fn expects(self, kind: &str) -> bool {
        match self {
            Self::Reserve => is_message_type::<events::ReserveStock>(kind),
            Self::Release => is_message_type::<events::ReleaseStock>(kind),
        }
    }
}

/// A quantity of one product; lines of one message name distinct products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// The product.
    pub product_id: Uuid,
    /// Units, at least 1.
    pub quantity: i64,
}

/// One checked unit of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Take every line from stock, or none.
    Reserve {
        /// The reservation's key.
        order_id: Uuid,
        /// What to take.
        lines: Vec<Line>,
    },
    /// Give back at most what the order still holds, once per release id.
    Release {
        /// The order.
        order_id: Uuid,
        /// The release's key within the order.
        release_id: Uuid,
        /// What to give back.
        lines: Vec<Line>,
    },
}

impl Command {
    /// The order the command is about.
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Reserve { order_id, .. } | Self::Release { order_id, .. } => *order_id,
        }
    }

    /// The command's lines.
    pub fn lines(&self) -> &[Line] {
        match self {
            Self::Reserve { lines, .. } | Self::Release { lines, .. } => lines,
        }
    }
}

/// Why a message cannot be applied, ever.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Another message type than the queue carries.
    #[error("unexpected message type {0:?} on this queue")]
    UnexpectedKind(String),
    /// Not a protobuf encoding of the expected message.
    #[error("undecodable payload: {0}")]
    Undecodable(#[from] prost::DecodeError),
    /// Decoded, but breaks the contract of shop/events/v1/events.proto.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl DecodeError {
    /// Every [`DecodeError::reason`].
    pub const REASONS: &'static [&'static str] = &["unexpected_type", "undecodable", "invalid"];

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnexpectedKind(_) => "unexpected_type",
            Self::Undecodable(_) => "undecodable",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Decodes and checks a message from the `work` queue.
pub fn decode(work: Work, message: &Message) -> Result<Command, DecodeError> {
    if !work.expects(&message.kind) {
        return Err(DecodeError::UnexpectedKind(message.kind.chars().take(80).collect()));
    }
    match work {
        Work::Reserve => {
            let reserve = events::ReserveStock::decode(message.payload.as_slice())?;
            Ok(Command::Reserve {
                order_id: uuid(&reserve.order_id, "order_id")?,
                lines: lines(&reserve.lines)?,
            })
        }
        Work::Release => {
            let release = events::ReleaseStock::decode(message.payload.as_slice())?;
            Ok(Command::Release {
                order_id: uuid(&release.order_id, "order_id")?,
                release_id: uuid(&release.release_id, "release_id")?,
                lines: lines(&release.lines)?,
            })
        }
    }
}

fn uuid(raw: &str, field: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(raw).map_err(|_| {
        DecodeError::Invalid(format!(
            "{field} {} is not a UUID",
            shop_platform::grpc::convert::echo(raw, 40)
        ))
    })
}

/// Checks the lines and merges repeated products into one line each, keeping first-seen order.
fn lines(raw: &[events::StockLine]) -> Result<Vec<Line>, DecodeError> {
    if raw.is_empty() {
        return Err(DecodeError::Invalid("no lines".into()));
    }
    if raw.len() > MAX_LINES {
        return Err(DecodeError::Invalid(format!(
            "{} lines; at most {MAX_LINES}",
            raw.len()
        )));
    }
    let mut merged: Vec<Line> = Vec::with_capacity(raw.len());
    for line in raw {
        let product_id = uuid(&line.product_id, "product_id")?;
        if line.quantity == 0 {
            return Err(DecodeError::Invalid(format!("quantity 0 for product {product_id}")));
        }
        let quantity = i64::from(line.quantity);
        match merged.iter_mut().find(|seen| seen.product_id == product_id) {
            Some(seen) => seen.quantity += quantity,
            None => merged.push(Line { product_id, quantity }),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A message of type `M` carrying `payload` (which need not be an `M`).
    fn message<M: prost::Name>(payload: Vec<u8>) -> Message {
        Message {
            id: "m".into(),
            kind: shop_proto::message_type::<M>(),
            payload,
            headers: BTreeMap::new(),
        }
    }

    fn reserve(order: &str, lines: &[(&str, u32)]) -> Vec<u8> {
        events::ReserveStock {
            order_id: order.into(),
            lines: lines
                .iter()
                .map(|(product_id, quantity)| events::StockLine {
                    product_id: (*product_id).into(),
                    quantity: *quantity,
                })
                .collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn repeated_products_are_merged() {
        let order = Uuid::now_v7();
        let product = Uuid::now_v7().to_string();
        let command = decode(
            Work::Reserve,
            &message::<events::ReserveStock>(reserve(&order.to_string(), &[(&product, 2), (&product, 3)])),
        );
        assert_eq!(
            command
                .ok()
                .map(|c| c.lines().to_vec())
                .map(|l| (l.len(), l[0].quantity)),
            Some((1, 5))
        );
    }

    #[test]
    fn broken_messages_are_refused_with_a_reason() {
        let order = Uuid::now_v7().to_string();
        let product = Uuid::now_v7().to_string();
        let cases = [
            (
                message::<events::ReleaseStock>(reserve(&order, &[(&product, 1)])),
                "unexpected_type",
            ),
            (message::<events::ReserveStock>(vec![0xff, 0xff, 0xff]), "undecodable"),
            (
                message::<events::ReserveStock>(reserve("x", &[(&product, 1)])),
                "invalid",
            ),
            (message::<events::ReserveStock>(reserve(&order, &[])), "invalid"),
            (
                message::<events::ReserveStock>(reserve(&order, &[(&product, 0)])),
                "invalid",
            ),
        ];
        for (message, reason) in cases {
            assert_eq!(decode(Work::Reserve, &message).err().map(|e| e.reason()), Some(reason));
        }
    }
}
