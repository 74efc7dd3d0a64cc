//! The verdict: what the ledger and the shop's own figures must agree on after the faults.
//! Pure functions of what was observed, so each rule is tested on its own.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use crate::{accounts::Product, ledger::Ledger, observe::OrderView};

/// Order statuses that hold stock (reserved and not given back).
const HOLDING: [&str; 3] = ["paid", "shipped", "delivered"];
/// Item statuses whose stock went back.
const GIVEN_BACK: [&str; 2] = ["cancelled", "returned"];

/// How the orders settled after the last fault.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// When the last order left `pending`, from the end of the last fault; `None` if some
    /// never did while the campaign waited.
    pub after_last_fault: Option<Duration>,
    /// The limit.
    pub limit: Duration,
    /// How long the campaign waited.
    pub waited: Duration,
}

/// The order placed once everything settled.
#[derive(Debug, Clone)]
pub struct FreshOrder {
    /// Its final status (`paid` expected), or what went wrong.
    pub outcome: String,
    /// From placing it to that status.
    pub took: Duration,
}

/// Everything observed at the end.
#[derive(Debug)]
pub struct Observed {
    /// What the buyers did.
    pub ledger: Ledger,
    /// Every order of the buyers, as the shop reports it.
    pub orders: Vec<OrderView>,
    /// Each product with the stock left.
    pub products: Vec<(Product, i64)>,
    /// Each dead-letter queue with its message count.
    pub dead_letters: Vec<(String, u32)>,
    /// How the orders settled.
    pub settle: Settle,
    /// The order placed afterwards.
    pub fresh_order: FreshOrder,
}

/// One check's verdict.
#[derive(Debug, Clone)]
pub struct Check {
    /// What it checks.
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// The figures behind the verdict.
    pub figures: String,
}

/// One product's stock, accounted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRow {
    /// The product.
    pub product_id: String,
    /// Its stock when put on sale.
    pub initial: i64,
    /// Its stock now.
    pub left: i64,
    /// Units held by paid, shipped and delivered orders (items not cancelled or returned).
    pub held: i64,
    /// Units in orders still pending (possibly reserved).
    pub pending: i64,
}

impl StockRow {
    /// `left + held - initial`: 0 when conserved, negative when units are lost.
    pub fn difference(&self) -> i64 {
        self.left + self.held - self.initial
    }
}

/// The stock account of every product.
pub fn stock_rows(observed: &Observed) -> Vec<StockRow> {
    let mut held: HashMap<&str, i64> = HashMap::new();
    let mut pending: HashMap<&str, i64> = HashMap::new();
    for order in &observed.orders {
        for item in &order.items {
            if order.is_pending() {
                *pending.entry(item.product_id.as_str()).or_default() += item.quantity;
            } else if HOLDING.contains(&order.status.as_str()) && !GIVEN_BACK.contains(&item.status.as_str()) {
                *held.entry(item.product_id.as_str()).or_default() += item.quantity;
            }
        }
    }
    observed
        .products
        .iter()
        .map(|(product, left)| StockRow {
            product_id: product.id.clone(),
            initial: product.initial_stock,
            left: *left,
            held: held.get(product.id.as_str()).copied().unwrap_or_default(),
            pending: pending.get(product.id.as_str()).copied().unwrap_or_default(),
        })
        .collect()
}

/// Every check, in the order they are printed.
pub fn evaluate(observed: &Observed) -> Vec<Check> {
    vec![
        settled(observed),
        conserved(observed),
        never_negative(observed),
        answered(observed),
        one_order_per_key(observed),
        dead_letters(observed),
        refunds(observed),
        fresh_order(observed),
    ]
}

fn check(name: impl Into<String>, passed: bool, figures: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        passed,
        figures: figures.into(),
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

fn settled(observed: &Observed) -> Check {
    let settle = observed.settle;
    let pending = observed.orders.iter().filter(|order| order.is_pending()).count();
    let name = format!(
        "every order left pending within {} of the last fault",
        seconds(settle.limit)
    );
    match settle.after_last_fault {
        Some(took) if pending == 0 => check(
            name,
            took <= settle.limit,
            format!("settled {} after it; 0 pending", seconds(took)),
        ),
        _ => check(
            name,
            false,
            format!("{pending} still pending {} after it", seconds(settle.waited)),
        ),
    }
}

fn conserved(observed: &Observed) -> Check {
    let rows = stock_rows(observed);
    let off: Vec<String> = rows
        .iter()
        .filter(|row| row.difference() != 0)
        .map(|row| format!("{}: {:+}", short(&row.product_id), row.difference()))
        .collect();
    let lost: i64 = rows.iter().map(|row| row.difference().min(0)).sum();
    let created: i64 = rows.iter().map(|row| row.difference().max(0)).sum();
    let figures = if off.is_empty() {
        format!("{} products: initial = left + held, 0 units lost", rows.len())
    } else {
        format!("{} units lost, {} created ({})", -lost, created, off.join(", "))
    };
    check(
        "stock conserved per product (initial = left + paid/shipped/delivered)",
        off.is_empty(),
        figures,
    )
}

fn never_negative(observed: &Observed) -> Check {
    let rows = stock_rows(observed);
    let negative = rows.iter().filter(|row| row.left < 0).count();
    let oversold: i64 = rows.iter().map(|row| (row.held - row.initial).max(0)).sum();
    check(
        "stock never negative, nothing oversold",
        negative == 0 && oversold == 0,
        format!("{negative} products below 0; {oversold} units oversold"),
    )
}

fn answered(observed: &Observed) -> Check {
    let placements = &observed.ledger.placements;
    let unanswered_errors: BTreeMap<&str, usize> = placements
        .iter()
        .filter(|placement| placement.answers.is_empty() && placement.refused.is_none())
        .fold(BTreeMap::new(), |mut counts, placement| {
            *counts
                .entry(placement.last_error.as_deref().unwrap_or("not sent"))
                .or_default() += 1;
            counts
        });
    let unanswered: usize = unanswered_errors.values().sum();
    let why = if unanswered_errors.is_empty() {
        String::new()
    } else {
        let listed: Vec<String> = unanswered_errors
            .iter()
            .map(|(error, count)| format!("{error} ×{count}"))
            .collect();
        format!(" (last: {})", listed.join(", "))
    };
    let refused: BTreeMap<&str, usize> =
        placements
            .iter()
            .filter_map(|p| p.refused.as_deref())
            .fold(BTreeMap::new(), |mut counts, code| {
                *counts.entry(code).or_default() += 1;
                counts
            });
    let refusals = if refused.is_empty() {
        String::new()
    } else {
        let listed: Vec<String> = refused.iter().map(|(code, count)| format!("{code} ×{count}")).collect();
        format!("; refused: {}", listed.join(", "))
    };
    check(
        "every placement answered (retried with its key after the faults)",
        unanswered == 0 && refused.is_empty(),
        format!("{} keys, {unanswered} never answered{why}{refusals}", placements.len()),
    )
}

fn one_order_per_key(observed: &Observed) -> Check {
    let placements = &observed.ledger.placements;
    let divergent = placements
        .iter()
        .filter(|placement| placement.answers.iter().collect::<BTreeSet<_>>().len() > 1)
        .count();
    let answered: BTreeSet<&str> = placements.iter().filter_map(|placement| placement.order_id()).collect();
    let in_shop: BTreeSet<&str> = observed.orders.iter().map(|order| order.id.as_str()).collect();
    // Orders no key was answered with: placed twice (or placed by an attempt whose answer was
    // lost and never asked again, which the check above reports).
    let extra = in_shop.difference(&answered).count();
    let missing = answered.difference(&in_shop).count();
    let repeats = placements.iter().filter(|placement| placement.repeated).count();
    check(
        "one order per Idempotency-Key",
        divergent == 0 && extra == 0 && missing == 0,
        format!(
            "{} orders for {} answered keys ({repeats} sent again on purpose): {extra} extra, {divergent} keys answered with two orders, {missing} answered orders missing",
            in_shop.len(),
            answered.len()
        ),
    )
}

fn dead_letters(observed: &Observed) -> Check {
    let total: u64 = observed.dead_letters.iter().map(|(_, count)| u64::from(*count)).sum();
    let listed: Vec<String> = observed
        .dead_letters
        .iter()
        .map(|(queue, count)| {
            format!(
                "{}: {count}",
                // Without the run's prefix: `stock.results.dead`, `orders.placed.dead`.
                queue.split_once('.').map_or(queue.as_str(), |(_, name)| name)
            )
        })
        .collect();
    check(
        "dead-letter queues empty",
        total == 0,
        format!("{total} ({})", listed.join(", ")),
    )
}

fn refunds(observed: &Observed) -> Check {
    let mut expected_total = 0;
    let mut refunded_total = 0;
    let mut wrong = 0;
    for order in &observed.orders {
        let expected = if order.status == "cancelled" {
            if order.captured { order.total } else { 0 }
        } else {
            order
                .items
                .iter()
                .filter(|item| item.status == "returned")
                .map(|item| item.unit_price * item.quantity)
                .sum()
        };
        expected_total += expected;
        refunded_total += order.refunded;
        if expected != order.refunded {
            wrong += 1;
        }
    }
    check(
        "refunds equal what was cancelled or returned",
        wrong == 0,
        format!("expected {expected_total}, refunded {refunded_total}; {wrong} orders differ"),
    )
}

fn fresh_order(observed: &Observed) -> Check {
    let fresh = &observed.fresh_order;
    check(
        "a fresh order is paid afterwards",
        fresh.outcome == "paid",
        format!("{} in {}", fresh.outcome, seconds(fresh.took)),
    )
}

/// How many orders are in each status.
pub fn statuses(orders: &[OrderView]) -> BTreeMap<String, usize> {
    orders.iter().fold(BTreeMap::new(), |mut counts, order| {
        *counts.entry(order.status.clone()).or_default() += 1;
        counts
    })
}

/// The last 8 characters of an id, for tables (ids are time-ordered: their heads look alike).
pub fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{ledger::Placement, observe::ItemView};

    fn product(id: &str, stock: i64) -> Product {
        Product {
            id: id.to_owned(),
            price: 1_001,
            initial_stock: stock,
        }
    }

    fn order(id: &str, status: &str, items: &[(&str, i64, &str)]) -> OrderView {
        let items: Vec<ItemView> = items
            .iter()
            .map(|(product_id, quantity, status)| ItemView {
                product_id: (*product_id).to_owned(),
                quantity: *quantity,
                unit_price: 1_001,
                status: (*status).to_owned(),
            })
            .collect();
        let total = items.iter().map(|item| item.unit_price * item.quantity).sum();
        OrderView {
            id: id.to_owned(),
            user_id: "u1".to_owned(),
            status: status.to_owned(),
            items,
            total,
            captured: HOLDING.contains(&status),
            refunded: 0,
        }
    }

    fn placement(key: &str, answers: &[&str]) -> Placement {
        Placement {
            key: key.to_owned(),
            answers: answers.iter().map(|answer| (*answer).to_owned()).collect(),
            ..Placement::default()
        }
    }

    /// A campaign where everything held: two orders of product p (10 in stock), one paid for
    /// 3 units, one rejected; 7 left.
    fn healthy() -> Observed {
        Observed {
            ledger: Ledger {
                placements: vec![placement("k1", &["o1"]), placement("k2", &["o2", "o2"])],
                ..Ledger::default()
            },
            orders: vec![
                order("o1", "paid", &[("p", 3, "ordered")]),
                order("o2", "rejected", &[("p", 20, "cancelled")]),
            ],
            products: vec![(product("p", 10), 7)],
            dead_letters: vec![("run.stock.results.dead".to_owned(), 0)],
            settle: Settle {
                after_last_fault: Some(Duration::from_secs(3)),
                limit: Duration::from_secs(30),
                waited: Duration::from_secs(3),
            },
            fresh_order: FreshOrder {
                outcome: "paid".to_owned(),
                took: Duration::from_millis(300),
            },
        }
    }

    fn failed(observed: &Observed) -> Vec<String> {
        evaluate(observed)
            .into_iter()
            .filter(|check| !check.passed)
            .map(|check| check.name)
            .collect()
    }

    #[test]
    fn a_healthy_campaign_passes_every_check() {
        assert_eq!(failed(&healthy()), Vec::<String>::new());
    }

    #[test]
    fn a_stranded_order_fails_settling_and_its_units_are_shown_pending() {
        let mut observed = healthy();
        observed.orders[1].status = "pending".to_owned();
        observed.settle.after_last_fault = None;
        assert_eq!(
            failed(&observed),
            ["every order left pending within 30.0 s of the last fault"]
        );
        assert_eq!(stock_rows(&observed)[0].pending, 20);
    }

    #[test]
    fn settling_late_fails() {
        let mut observed = healthy();
        observed.settle.after_last_fault = Some(Duration::from_secs(31));
        assert_eq!(failed(&observed).len(), 1);
    }

    #[test]
    fn lost_units_fail_conservation() {
        let mut observed = healthy();
        observed.products[0].1 = 5;
        assert_eq!(
            failed(&observed),
            ["stock conserved per product (initial = left + paid/shipped/delivered)"]
        );
        assert_eq!(stock_rows(&observed)[0].difference(), -2);
    }

    #[test]
    fn returned_and_cancelled_items_hold_no_stock() {
        let mut observed = healthy();
        observed.orders.push(order("o3", "delivered", &[("p", 2, "returned")]));
        observed.ledger.placements.push(placement("k3", &["o3"]));
        observed.orders[2].refunded = 2_002;
        assert_eq!(failed(&observed), Vec::<String>::new());
    }

    #[test]
    fn overselling_fails() {
        let mut observed = healthy();
        observed.orders.push(order("o3", "paid", &[("p", 8, "ordered")]));
        observed.ledger.placements.push(placement("k3", &["o3"]));
        observed.products[0].1 = -1;
        let failed = failed(&observed);
        assert!(
            failed.contains(&"stock never negative, nothing oversold".to_owned()),
            "{failed:?}"
        );
    }

    #[test]
    fn an_order_no_key_was_answered_with_is_a_double() {
        let mut observed = healthy();
        observed.orders.push(order("o3", "rejected", &[("p", 1, "cancelled")]));
        assert_eq!(failed(&observed), ["one order per Idempotency-Key"]);
    }

    #[test]
    fn a_key_answered_with_two_orders_is_a_double() {
        let mut observed = healthy();
        observed.ledger.placements[1].answers.push("o1".to_owned());
        assert_eq!(failed(&observed), ["one order per Idempotency-Key"]);
    }

    #[test]
    fn an_unanswered_key_fails() {
        let mut observed = healthy();
        observed.ledger.placements.push(placement("k3", &[]));
        assert_eq!(
            failed(&observed),
            ["every placement answered (retried with its key after the faults)"]
        );
    }

    #[test]
    fn a_dead_letter_fails() {
        let mut observed = healthy();
        observed.dead_letters[0].1 = 1;
        assert_eq!(failed(&observed), ["dead-letter queues empty"]);
    }

    #[test]
    fn a_cancelled_paid_order_must_be_refunded_in_full_and_once() {
        let mut observed = healthy();
        observed.orders[0].status = "cancelled".to_owned();
        observed.orders[0].items[0].status = "cancelled".to_owned();
        observed.products[0].1 = 10;
        assert_eq!(failed(&observed), ["refunds equal what was cancelled or returned"]);
        observed.orders[0].refunded = observed.orders[0].total;
        assert_eq!(failed(&observed), Vec::<String>::new());
        observed.orders[0].refunded = 2 * observed.orders[0].total;
        assert_eq!(failed(&observed), ["refunds equal what was cancelled or returned"]);
    }

    #[test]
    fn a_fresh_order_not_paid_fails() {
        let mut observed = healthy();
        observed.fresh_order.outcome = "pending".to_owned();
        assert_eq!(failed(&observed), ["a fresh order is paid afterwards"]);
    }
}
