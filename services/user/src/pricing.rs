//! Cart arithmetic in integer minor units: line totals at the product's current price, and the
//! cart total per currency (the currency of the oldest priced line first, others beside it).
//! Overflow is an error, never a wrapped amount.

use shop_platform::grpc::error::ServiceError;
use shop_proto::pb::{catalog::Product, common::Money};

use crate::entity::cart_item;

/// The currency of an empty cart's zero total.
pub const DEFAULT_CURRENCY: &str = "KRW";

/// A cart line with its product's live details and its price.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The stored line.
    pub item: cart_item::Model,
    /// The product as the catalog has it now; `None` when it is gone.
    pub product: Option<Product>,
    /// Price × quantity; `None` when the line cannot be ordered (product gone or hidden).
    pub line_total: Option<Money>,
}

/// A cart's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// The sum in the main currency.
    pub total: Money,
    /// Sums in other currencies, in order of first appearance.
    pub others: Vec<Money>,
}

/// The machine code of a cart whose amounts do not fit 64 bits.
pub const TOO_LARGE: &str = "cart_total_too_large";

/// A clear refusal, not a 500: only a price written before the catalog bounded prices can get
/// here, and [`admissible`] keeps such a product out of carts.
fn overflow() -> ServiceError {
    ServiceError::FailedPrecondition {
        code: TOO_LARGE,
        message: "the cart's amounts are too large to add up; remove the most expensive lines".to_owned(),
    }
}

/// Refuses a price that a full cart (`max_lines` lines of `max_quantity` units each) could not
/// add up in 64 bits, so that a product let into a cart never breaks its totals later.
pub fn admissible(price: &Money, max_quantity: u32, max_lines: usize) -> Result<(), ServiceError> {
    let lines = i64::try_from(max_lines).unwrap_or(i64::MAX);
    price
        .amount
        .checked_mul(i64::from(max_quantity))
        .and_then(|line| line.checked_mul(lines))
        .map(|_| ())
        .ok_or_else(|| ServiceError::FailedPrecondition {
            code: TOO_LARGE,
            message: format!("the product's price {} is too large for a cart", price.amount),
        })
}

/// Prices a line.
pub fn line(item: cart_item::Model, product: Option<Product>) -> Result<Line, ServiceError> {
    let line_total = match product.as_ref() {
        Some(product) if product.visible && !product.deleted => match &product.price {
            Some(price) => Some(Money {
                amount: price
                    .amount
                    .checked_mul(i64::from(item.quantity))
                    .ok_or_else(overflow)?,
                currency: price.currency.clone(),
            }),
            None => None,
        },
        _ => None,
    };
    Ok(Line {
        item,
        product,
        line_total,
    })
}

/// Sums the present line totals of `lines` (oldest first) per currency.
pub fn totals(lines: &[Line]) -> Result<Totals, ServiceError> {
    let mut sums: Vec<Money> = Vec::new();
    for money in lines.iter().filter_map(|line| line.line_total.as_ref()) {
        match sums.iter_mut().find(|sum| sum.currency == money.currency) {
            Some(sum) => sum.amount = sum.amount.checked_add(money.amount).ok_or_else(overflow)?,
            None => sums.push(money.clone()),
        }
    }
    let mut sums = sums.into_iter();
    let total = sums.next().unwrap_or_else(|| Money {
        amount: 0,
        currency: DEFAULT_CURRENCY.to_owned(),
    });
    Ok(Totals {
        total,
        others: sums.collect(),
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn item(quantity: i32) -> cart_item::Model {
        cart_item::Model {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            product_id: Uuid::now_v7(),
            quantity,
            created_at: chrono::Utc::now(),
        }
    }

    fn product(amount: i64, currency: &str, visible: bool) -> Product {
        Product {
            price: Some(Money {
                amount,
                currency: currency.to_owned(),
            }),
            visible,
            ..Product::default()
        }
    }

    fn money(amount: i64, currency: &str) -> Money {
        Money {
            amount,
            currency: currency.to_owned(),
        }
    }

    #[test]
    fn an_empty_cart_totals_zero_won() -> Result<(), ServiceError> {
        assert_eq!(
            totals(&[])?,
            Totals {
                total: money(0, "KRW"),
                others: vec![]
            }
        );
        Ok(())
    }

    #[test]
    fn lines_are_priced_and_summed_per_currency() -> Result<(), ServiceError> {
        let lines = vec![
            line(item(2), Some(product(1_250, "USD", true)))?,
            line(item(3), Some(product(12_900, "KRW", true)))?,
            line(item(1), Some(product(99, "USD", true)))?,
            line(item(5), Some(product(1_000, "USD", false)))?,
            line(item(5), None)?,
        ];
        assert_eq!(lines[0].line_total, Some(money(2_500, "USD")));
        assert_eq!(lines[3].line_total, None, "hidden products are not priced");
        assert_eq!(lines[4].line_total, None, "gone products are not priced");
        assert_eq!(
            totals(&lines)?,
            Totals {
                total: money(2_599, "USD"),
                others: vec![money(38_700, "KRW")]
            }
        );
        Ok(())
    }

    #[test]
    fn a_price_a_full_cart_cannot_add_up_is_not_admitted() {
        assert!(admissible(&money(1_000_000_000_000, "KRW"), 1_000, 100).is_ok());
        for amount in [1 << 62, i64::MAX, i64::MAX / 1_000] {
            let refused = admissible(&money(amount, "KRW"), 1_000, 100);
            assert!(
                matches!(refused, Err(ServiceError::FailedPrecondition { code: TOO_LARGE, .. })),
                "{amount}"
            );
        }
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(line(item(2), Some(product(i64::MAX, "KRW", true))).is_err());
        let big = || line(item(1), Some(product(i64::MAX, "KRW", true)));
        let lines: Result<Vec<_>, _> = [big(), big()].into_iter().collect();
        assert!(matches!(
            lines.map(|lines| totals(&lines)),
            Ok(Err(ServiceError::FailedPrecondition { code: TOO_LARGE, .. }))
        ));
    }
}
