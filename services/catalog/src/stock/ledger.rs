//! The arithmetic of a batch, in memory and in arrival order: what the database holds for the
//! batch's products and orders (loaded under row locks), then each command applied in turn.
//! Every order is decided whole before anything of it is recorded, so a short line rejects the
//! order and changes no line: the all-or-nothing rule needs no rollback. What changed is read
//! back at the end and written in a few set-wise statements.

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use super::command::{Command, Line};

/// A product whose stock could not cover a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shortage {
    /// The product.
    pub product_id: Uuid,
    /// Units asked for.
    pub requested: i64,
    /// Units available then; 0 for a product that no longer exists.
    pub available: i64,
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every line was taken from stock.
    Reserved,
    /// Nothing was taken; these lines were short.
    Rejected(Vec<Shortage>),
    /// The order was answered before: reserved.
    AlreadyReserved,
    /// The order was answered before: rejected.
    AlreadyRejected(Vec<Shortage>),
    /// The release was applied, giving back this many units in all (maybe 0).
    Released(i64),
    /// The release was applied before.
    AlreadyReleased,
}

/// A product as locked for the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProductStock {
    /// Units available.
    pub stock: i64,
    /// Deleted products take no new reservations (releases still return to them).
    pub deleted: bool,
}

/// One product line of a reserved order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLine {
    /// Units taken.
    pub quantity: i64,
    /// Units given back so far.
    pub released: i64,
    /// `released` as stored, to tell which lines need an update.
    pub stored_released: i64,
}

/// An order's reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Stock was taken: per product, what is held.
    Reserved(BTreeMap<Uuid, HeldLine>),
    /// Refused, with the short lines.
    Rejected(Vec<Shortage>),
}

/// The state a batch works on, and what it changed.
#[derive(Debug, Default)]
pub struct Ledger {
    products: HashMap<Uuid, ProductStock>,
    reservations: HashMap<Uuid, Reservation>,
    /// Orders whose reservation was made by this batch (to insert).
    new_orders: Vec<Uuid>,
    /// Releases recorded as new by this batch and not yet applied.
    fresh_releases: HashSet<(Uuid, Uuid)>,
    /// Net change of stock per product.
    deltas: BTreeMap<Uuid, i64>,
}

impl Ledger {
    /// A ledger over the locked `products`, the stored `reservations` of the batch's orders, and
    /// the releases that this batch recorded for the first time.
    pub fn new(
        products: HashMap<Uuid, ProductStock>,
        reservations: HashMap<Uuid, Reservation>,
        fresh_releases: HashSet<(Uuid, Uuid)>,
    ) -> Self {
        Self {
            products,
            reservations,
            fresh_releases,
            ..Self::default()
        }
    }

    /// Applies one command.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Reserve { order_id, lines } => self.reserve(*order_id, lines),
            Command::Release {
                order_id,
                release_id,
                lines,
            } => self.release(*order_id, *release_id, lines),
        }
    }

    fn reserve(&mut self, order_id: Uuid, lines: &[Line]) -> Outcome {
        match self.reservations.get(&order_id) {
            Some(Reservation::Reserved(_)) => return Outcome::AlreadyReserved,
            Some(Reservation::Rejected(short)) => return Outcome::AlreadyRejected(short.clone()),
            None => {}
        }
        let shortages: Vec<Shortage> = lines
            .iter()
            .filter_map(|line| {
                let available = match self.products.get(&line.product_id) {
                    Some(product) if !product.deleted => product.stock,
                    _ => 0,
                };
                (available < line.quantity).then_some(Shortage {
                    product_id: line.product_id,
                    requested: line.quantity,
                    available,
                })
            })
            .collect();
        self.new_orders.push(order_id);
        if !shortages.is_empty() {
            self.reservations
                .insert(order_id, Reservation::Rejected(shortages.clone()));
            return Outcome::Rejected(shortages);
        }
        let mut held = BTreeMap::new();
        for line in lines {
            self.add_stock(line.product_id, -line.quantity);
            held.insert(
                line.product_id,
                HeldLine {
                    quantity: line.quantity,
                    released: 0,
                    stored_released: 0,
                },
            );
        }
        self.reservations.insert(order_id, Reservation::Reserved(held));
        Outcome::Reserved
    }

    fn release(&mut self, order_id: Uuid, release_id: Uuid, lines: &[Line]) -> Outcome {
        if !self.fresh_releases.remove(&(order_id, release_id)) {
            return Outcome::AlreadyReleased;
        }
        let held = match self.reservations.get_mut(&order_id) {
            Some(Reservation::Reserved(held)) => held,
            // Refused earlier: nothing to give back.
            Some(Reservation::Rejected(_)) => return Outcome::Released(0),
            None => {
                // Released before its reservation arrived (the order was cancelled or timed out
                // while its ReserveStock was still on the way): the order is closed as refused,
                // so that a late or re-sent ReserveStock takes nothing.
                self.new_orders.push(order_id);
                self.reservations.insert(order_id, Reservation::Rejected(Vec::new()));
                return Outcome::Released(0);
            }
        };
        let mut returned = Vec::new();
        for line in lines {
            if let Some(held_line) = held.get_mut(&line.product_id) {
                let give = line.quantity.min(held_line.quantity - held_line.released);
                if give > 0 {
                    held_line.released += give;
                    returned.push((line.product_id, give));
                }
            }
        }
        let total = returned.iter().fold(0_i64, |sum, (_, give)| sum.saturating_add(*give));
        for (product_id, give) in returned {
            self.add_stock(product_id, give);
        }
        Outcome::Released(total)
    }

    /// Gives `change` units back to a product. The stock saturates at `i64::MAX` rather than
    /// overflow (stock is bounded far below that on input, but a row written before the bound
    /// must not fail a whole batch with "bigint out of range").
    fn add_stock(&mut self, product_id: Uuid, change: i64) {
        let change = match self.products.get_mut(&product_id) {
            Some(product) => {
                let room = i64::MAX.saturating_sub(product.stock);
                let change = change.min(room);
                product.stock = product.stock.saturating_add(change);
                change
            }
            None => change,
        };
        let delta = self.deltas.entry(product_id).or_default();
        *delta = delta.saturating_add(change);
    }

    /// Net stock change per product, in product id order (the lock order); zeros left out.
    pub fn stock_changes(&self) -> impl Iterator<Item = (Uuid, i64)> + '_ {
        self.deltas
            .iter()
            .filter(|(_, delta)| **delta != 0)
            .map(|(id, delta)| (*id, *delta))
    }

    /// The reservations this batch made, in the order they were made.
    pub fn new_reservations(&self) -> impl Iterator<Item = (Uuid, &Reservation)> + '_ {
        self.new_orders
            .iter()
            .filter_map(|order| self.reservations.get(order).map(|r| (*order, r)))
    }

    /// Lines of reservations made before this batch whose `released` changed:
    /// `(order, product, new released)`.
    pub fn released_lines(&self) -> Vec<(Uuid, Uuid, i64)> {
        let new: HashSet<&Uuid> = self.new_orders.iter().collect();
        let mut changed = Vec::new();
        for (order, reservation) in &self.reservations {
            if new.contains(order) {
                continue;
            }
            if let Reservation::Reserved(held) = reservation {
                for (product, line) in held {
                    if line.released != line.stored_released {
                        changed.push((*order, *product, line.released));
                    }
                }
            }
        }
        changed.sort_unstable();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product_id: Uuid, quantity: i64) -> Line {
        Line { product_id, quantity }
    }

    fn ledger(stock: &[(Uuid, i64)], fresh: &[(Uuid, Uuid)]) -> Ledger {
        let products = stock
            .iter()
            .map(|(id, stock)| {
                (
                    *id,
                    ProductStock {
                        stock: *stock,
                        deleted: false,
                    },
                )
            })
            .collect();
        Ledger::new(products, HashMap::new(), fresh.iter().copied().collect())
    }

    #[test]
    fn a_short_line_rejects_the_whole_order() {
        let (a, b, order) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut ledger = ledger(&[(a, 10), (b, 1)], &[]);
        let outcome = ledger.apply(&Command::Reserve {
            order_id: order,
            lines: vec![line(a, 2), line(b, 2)],
        });
        assert_eq!(
            outcome,
            Outcome::Rejected(vec![Shortage {
                product_id: b,
                requested: 2,
                available: 1
            }])
        );
        assert_eq!(ledger.stock_changes().count(), 0, "no line decremented");
    }

    #[test]
    fn orders_are_served_in_arrival_order_until_stock_runs_out() {
        let product = Uuid::now_v7();
        let mut ledger = ledger(&[(product, 3)], &[]);
        let outcomes: Vec<bool> = (0..5)
            .map(|_| {
                ledger.apply(&Command::Reserve {
                    order_id: Uuid::now_v7(),
                    lines: vec![line(product, 1)],
                }) == Outcome::Reserved
            })
            .collect();
        assert_eq!(outcomes, [true, true, true, false, false]);
        assert_eq!(ledger.stock_changes().collect::<Vec<_>>(), [(product, -3)]);
    }

    #[test]
    fn repeats_change_nothing_and_releases_give_back_only_what_is_held() {
        let (product, order, item) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut ledger = ledger(&[(product, 5)], &[(order, item), (order, order)]);
        let reserve = Command::Reserve {
            order_id: order,
            lines: vec![line(product, 3)],
        };
        assert_eq!(ledger.apply(&reserve), Outcome::Reserved);
        assert_eq!(ledger.apply(&reserve), Outcome::AlreadyReserved);
        let release = |release_id, quantity| Command::Release {
            order_id: order,
            release_id,
            lines: vec![line(product, quantity)],
        };
        assert_eq!(ledger.apply(&release(item, 1)), Outcome::Released(1));
        assert_eq!(ledger.apply(&release(item, 1)), Outcome::AlreadyReleased);
        assert_eq!(
            ledger.apply(&release(order, 3)),
            Outcome::Released(2),
            "only what is still held"
        );
        assert_eq!(ledger.stock_changes().count(), 0, "everything went back");
    }

    #[test]
    fn a_release_before_its_reservation_closes_the_order() {
        let (product, order) = (Uuid::now_v7(), Uuid::now_v7());
        let mut ledger = ledger(&[(product, 5)], &[(order, order)]);
        let release = Command::Release {
            order_id: order,
            release_id: order,
            lines: vec![line(product, 2)],
        };
        assert_eq!(ledger.apply(&release), Outcome::Released(0));
        let late = Command::Reserve {
            order_id: order,
            lines: vec![line(product, 2)],
        };
        assert_eq!(ledger.apply(&late), Outcome::AlreadyRejected(Vec::new()));
        assert_eq!(ledger.stock_changes().count(), 0, "the late reservation took nothing");
        assert_eq!(ledger.new_reservations().count(), 1, "the closed order is recorded");
    }

    #[test]
    fn a_release_onto_a_huge_stock_saturates_and_the_other_lines_still_go_back() {
        let (full, other, order) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let held = |quantity| HeldLine {
            quantity,
            released: 0,
            stored_released: 0,
        };
        let reservations = HashMap::from([(
            order,
            Reservation::Reserved(BTreeMap::from([(full, held(5)), (other, held(2))])),
        )]);
        let products = HashMap::from([
            (
                full,
                ProductStock {
                    stock: i64::MAX - 1,
                    deleted: false,
                },
            ),
            (
                other,
                ProductStock {
                    stock: 10,
                    deleted: false,
                },
            ),
        ]);
        let mut ledger = Ledger::new(products, reservations, HashSet::from([(order, order)]));
        let release = Command::Release {
            order_id: order,
            release_id: order,
            lines: vec![line(full, 5), line(other, 2)],
        };
        assert_eq!(ledger.apply(&release), Outcome::Released(7));
        assert_eq!(
            ledger.stock_changes().collect::<Vec<_>>(),
            {
                let mut expected = vec![(full, 1), (other, 2)];
                expected.sort_unstable();
                expected
            },
            "the full product takes only what fits; the other gets its units back"
        );
    }
}
