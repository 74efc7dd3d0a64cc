//! The AMQP `type` of a queue message: the full protobuf name of its payload
//! (`shop.events.v1.ReserveStock`), taken from the generated code, so that the publisher and the
//! consumers of a message cannot spell it differently.

use prost::Name;

/// The `type` a message carrying an `M` is published with.
pub fn message_type<M: Name>() -> String {
    M::full_name()
}

/// Whether `kind`, a received message's `type`, names `M`; without allocating, for every
/// delivery. Every shop package has a name (`buf lint`), so the full name is
/// `PACKAGE.NAME`.
pub fn is_message_type<M: Name>(kind: &str) -> bool {
    kind.strip_prefix(M::PACKAGE)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|name| name == M::NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::events;

    /// The type names are wire values: a renamed message or package changes what the services
    /// exchange, and must show up here rather than pass unnoticed.
    #[test]
    fn a_message_type_is_the_full_protobuf_name() {
        assert_eq!(message_type::<events::ReserveStock>(), "shop.events.v1.ReserveStock");
    }

    #[test]
    fn a_type_matches_its_own_message_only() {
        let reserve = message_type::<events::ReserveStock>();
        assert!(is_message_type::<events::ReserveStock>(&reserve));
        for other in [
            "shop.events.v1.ReleaseStock",
            "shop.events.v1ReserveStock",
            "shop.events.v1.ReserveStockX",
            "ReserveStock",
            "x.shop.events.v1.ReserveStock",
            "",
        ] {
            assert!(!is_message_type::<events::ReserveStock>(other), "{other}");
        }
        assert!(is_message_type::<events::StockReleased>(&message_type::<
            events::StockReleased,
        >()));
    }
}
