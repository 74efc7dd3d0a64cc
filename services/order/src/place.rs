//! PlaceOrder: checks the request, answers a retry of an order from the cart from its
//! idempotency key (a retry of explicit lines finds its order when its key is claimed, below),
//! reads the caller's cart lines (unpriced) for an order from the cart, snapshots names and prices from the
//! catalog in one call, and has the order (PENDING), its items, its payment record, its key,
//! the ReserveStock message and, for an order from the cart, the OrderPlaced message written in
//! ONE transaction, shared with the placements that arrive meanwhile (`placements`). Stock is
//! the catalog's to decide afterwards, and the cart the user service's to trim (on
//! OrderPlaced); nothing here waits for either. The one exception: an order for more than the
//! catalog's recent answer said was left is written rejected in that transaction, without
//! asking (`shortages`); it is answered as accepted (`pending`), as every new order is.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use shop_platform::grpc::{error::ServiceError, identity::Caller};
use shop_proto::pb::{
    events::{StockRejected, StockShortage},
    order::{PlaceOrderRequest, place_order_request::Source},
};
use uuid::Uuid;

use crate::{
    context::Context,
    entity::{ItemStatus, OrderStatus, PaymentStatus, item, order, payment},
    idempotency::{self, Existing},
    placed,
    placements::{NewOrder, Written},
    stock,
    store::{self, OrderRecord},
    upstream::{Product, Upstream},
};

/// The most lines (distinct products) one order may have.
const MAX_LINES: usize = 100;

/// One product to order, and the cart lines it comes from (none for explicit lines).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    product_id: Uuid,
    quantity: u32,
    cart_lines: Vec<Uuid>,
}

/// What to order, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    /// Explicit lines, merged by product, in the order first given.
    Lines(Vec<Line>),
    /// The caller's cart as it is now.
    Cart,
}

impl Wanted {
    fn parse(source: Option<Source>) -> Result<Self, ServiceError> {
        match source {
            None => Err(ServiceError::invalid("say what to order: items or from_cart")),
            Some(Source::FromCart(false)) => Err(ServiceError::invalid("from_cart must be true when given")),
            Some(Source::FromCart(true)) => Ok(Self::Cart),
            Some(Source::Items(items)) => {
                if items.lines.is_empty() {
                    return Err(ServiceError::invalid("an order needs at least one line"));
                }
                if items.lines.len() > MAX_LINES {
                    return Err(ServiceError::invalid(format!("an order has at most {MAX_LINES} lines")));
                }
                let lines = items
                    .lines
                    .iter()
                    .map(|line| {
                        let product_id = Uuid::parse_str(&line.product_id)
                            .map_err(|_| ServiceError::invalid(format!("{:?} is not a product id", line.product_id)))?;
                        if line.quantity == 0 {
                            return Err(ServiceError::invalid("quantities must be at least 1"));
                        }
                        Ok(Line {
                            product_id,
                            quantity: line.quantity,
                            cart_lines: Vec::new(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Self::Lines(merge(lines)?))
            }
        }
    }

    /// The request in canonical form: equal for requests that order the same thing.
    fn canonical(&self) -> String {
        match self {
            Self::Cart => "from_cart".to_owned(),
            Self::Lines(lines) => {
                let mut sorted: Vec<(Uuid, u32)> = lines.iter().map(|line| (line.product_id, line.quantity)).collect();
                sorted.sort();
                sorted.iter().fold("items".to_owned(), |mut out, (id, quantity)| {
                    out.push_str(&format!("\n{id} {quantity}"));
                    out
                })
            }
        }
    }
}

/// Merges lines naming the same product, keeping the order in which products first appear.
fn merge(lines: Vec<Line>) -> Result<Vec<Line>, ServiceError> {
    let mut merged: Vec<Line> = Vec::with_capacity(lines.len());
    for line in lines {
        match merged.iter_mut().find(|seen| seen.product_id == line.product_id) {
            Some(seen) => {
                seen.quantity = seen
                    .quantity
                    .checked_add(line.quantity)
                    .ok_or_else(|| ServiceError::invalid("a quantity is too large"))?;
                seen.cart_lines.extend(line.cart_lines);
            }
            None => merged.push(line),
        }
    }
    Ok(merged)
}

/// Places an order for `caller`, or returns the one its key already placed.
pub async fn place(
    ctx: &Context,
    upstream: &Upstream,
    caller: &Caller,
    request: PlaceOrderRequest,
) -> Result<OrderRecord, ServiceError> {
    idempotency::validate_key(&request.idempotency_key)?;
    let key = request.idempotency_key;
    let wanted = Wanted::parse(request.source)?;
    let hash = idempotency::fingerprint(&wanted.canonical());
    let from_cart = wanted == Wanted::Cart;
    if from_cart {
        // A retry of an order from the cart is answered before anything else is asked: its
        // cart lines are gone, or going (its OrderPlaced was committed with the order).
        let row = ctx.keys.submit((caller.user_id, key.clone())).await??;
        if let Existing::Placed(order_id) = idempotency::decide(row.as_ref(), ctx.clock.now(), &hash)? {
            return existing(ctx, order_id).await;
        }
    }
    match tokio::time::timeout(
        idempotency::PLACEMENT_LIMIT,
        place_new(ctx, upstream, caller, key, hash, wanted),
    )
    .await
    {
        Ok(placed) => placed,
        Err(_elapsed) => Err(ServiceError::Unavailable(
            "placing the order took too long; retry with the same Idempotency-Key".into(),
        )),
    }
}

async fn place_new(
    ctx: &Context,
    upstream: &Upstream,
    caller: &Caller,
    key: String,
    hash: String,
    wanted: Wanted,
) -> Result<OrderRecord, ServiceError> {
    let from_cart = wanted == Wanted::Cart;
    // An order of explicit lines reads nothing first: its key is claimed in the transaction
    // that writes it, and a key that placed an order already leaves the new one unwritten and
    // answers with its own (`Written::KeyTaken`, below). Only a refusal while pricing it (the
    // product since deleted or repriced in another currency, the catalog unreachable) asks
    // whether the key placed the order before, so a retry gets its order whatever changed.
    let (record, lines, products) = match priced(ctx, upstream, caller, wanted).await {
        Ok(priced) => priced,
        Err(refused) if !from_cart => return placed_by_key(ctx, caller, &key, &hash, refused).await,
        Err(refused) => return Err(refused),
    };
    let order_id = record.order.id;
    let short = shortages(&lines, &products);
    let sold_out = (!short.is_empty()).then(|| StockRejected {
        order_id: order_id.to_string(),
        short,
    });
    let reserve = sold_out
        .is_none()
        .then(|| stock::reserve(&ctx.config.queues, order_id, &record.items));
    let messages: Vec<_> = reserve
        .into_iter()
        .chain(placed::message(&ctx.config.order_queues, &record))
        .collect();
    let sold_out_now = sold_out.is_some();
    // A sold-out order from explicit lines writes no message: no relay pass to ask for.
    let wakes_relay = !messages.is_empty();
    let new = NewOrder {
        record,
        key,
        hash,
        messages,
        sold_out,
    };
    let (key, hash) = (new.key.clone(), new.hash.clone());
    let record = new.record.clone();
    let written = ctx.placements.submit(new).await??;
    if written == Written::KeyTaken {
        // Another request with the key committed first (or is committing: its transaction
        // held ours until it ended).
        let in_use = ServiceError::Aborted {
            code: "idempotency_key_in_use",
            message: "another request with this idempotency key is in progress; retry later".into(),
        };
        return placed_by_key(ctx, caller, &key, &hash, in_use).await;
    }
    if wakes_relay {
        ctx.relay.wake();
    }
    tracing::info!(order_id = %order_id, total = record.order.total, lines = record.items.len(), sold_out = sold_out_now, "order placed");
    crate::metrics::count(crate::metrics::OrderEvent::Placed);
    Ok(record)
}

/// The order the caller's `key` placed, or `otherwise` when it placed none (a key used for
/// another request is refused as such).
async fn placed_by_key(
    ctx: &Context,
    caller: &Caller,
    key: &str,
    hash: &str,
    otherwise: ServiceError,
) -> Result<OrderRecord, ServiceError> {
    match idempotency::find(&ctx.db, ctx.clock.now(), caller.user_id, key, hash).await? {
        Existing::Placed(order_id) => existing(ctx, order_id).await,
        Existing::Free => Err(otherwise),
    }
}

/// The order `wanted` as the catalog prices it now (PENDING), with its lines and the catalog's
/// answer about their products.
async fn priced(
    ctx: &Context,
    upstream: &Upstream,
    caller: &Caller,
    wanted: Wanted,
) -> Result<(OrderRecord, Vec<Line>, HashMap<Uuid, Product>), ServiceError> {
    let from_cart = wanted == Wanted::Cart;
    let lines = match wanted {
        Wanted::Lines(lines) => lines,
        Wanted::Cart => cart_lines(upstream, caller).await?,
    };
    let ids: Vec<Uuid> = lines.iter().map(|line| line.product_id).collect();
    let products = upstream.products(&ids).await?;
    let record = snapshot(caller, &lines, &products, ctx.clock.now(), from_cart)?;
    Ok((record, lines, products))
}

/// The lines asking for more than the catalog said was left, in its answer up to
/// `SHOP_ORDER_PRODUCT_TTL` old. An order with any is rejected at once, as the catalog's
/// reservation would reject it (naming the lines short by that answer), without asking: in a
/// flash sale most orders come after the last unit is gone, and each asked the catalog over the
/// work queue and waited for its answer (docs/decisions.md). The answer's age only ever errs
/// towards refusing: a restock reaches orders within the TTL, as it reaches the product pages;
/// an order the answer does not refuse is reserved by the catalog, whose reservation decides.
fn shortages(lines: &[Line], products: &HashMap<Uuid, Product>) -> Vec<StockShortage> {
    lines
        .iter()
        .filter_map(|line| {
            let available = products.get(&line.product_id)?.stock.max(0);
            (i64::from(line.quantity) > available).then(|| StockShortage {
                product_id: line.product_id.to_string(),
                requested: line.quantity,
                available,
            })
        })
        .collect()
}

/// The caller's cart as lines to order (priced with the explicit lines' one catalog call).
async fn cart_lines(upstream: &Upstream, caller: &Caller) -> Result<Vec<Line>, ServiceError> {
    let cart: Vec<Line> = upstream
        .cart_lines(caller)
        .await?
        .into_iter()
        .filter(|line| line.quantity > 0)
        .map(|line| Line {
            product_id: line.product_id,
            quantity: line.quantity,
            cart_lines: vec![line.item_id],
        })
        .collect();
    if cart.is_empty() {
        return Err(ServiceError::FailedPrecondition {
            code: "cart_empty",
            message: "the cart is empty".into(),
        });
    }
    let lines = merge(cart)?;
    if lines.len() > MAX_LINES {
        return Err(ServiceError::invalid(format!(
            "an order has at most {MAX_LINES} distinct products"
        )));
    }
    Ok(lines)
}

/// A total beyond 64 bits: for an order from the cart, the cart's lines are the caller's to
/// change (`cart_total_too_large`, as the cart itself answers), not the request.
fn too_large(from_cart: bool) -> ServiceError {
    if from_cart {
        ServiceError::FailedPrecondition {
            code: "cart_total_too_large",
            message: "the cart's total is too large to order at once; remove some lines".into(),
        }
    } else {
        ServiceError::invalid("the order total is too large")
    }
}

/// The new order (PENDING) with the names and prices of `products` now, in one currency.
fn snapshot(
    caller: &Caller,
    lines: &[Line],
    products: &HashMap<Uuid, Product>,
    now: DateTime<Utc>,
    from_cart: bool,
) -> Result<OrderRecord, ServiceError> {
    let order_id = Uuid::now_v7();
    let mut currency: Option<&str> = None;
    let mut total: i64 = 0;
    let mut items = Vec::with_capacity(lines.len());
    for (position, line) in lines.iter().enumerate() {
        let product = products
            .get(&line.product_id)
            .context("the catalog's answer lost a product")?;
        if *currency.get_or_insert(&product.currency) != product.currency {
            return Err(ServiceError::FailedPrecondition {
                code: "mixed_currency",
                message: "the products are priced in different currencies; order them separately".into(),
            });
        }
        total = product
            .price
            .checked_mul(i64::from(line.quantity))
            .and_then(|line_total| total.checked_add(line_total))
            .ok_or_else(|| too_large(from_cart))?;
        items.push(item::Model {
            id: Uuid::now_v7(),
            order_id,
            position: i32::try_from(position).context("position out of range")?,
            product_id: line.product_id,
            name: product.name.clone(),
            unit_price: product.price,
            quantity: i64::from(line.quantity),
            status: ItemStatus::Ordered,
            cart_item_id: line.cart_lines.first().copied(),
            shipped_at: None,
            delivered_at: None,
            returned_at: None,
        });
    }
    let currency = currency.context("an order without lines")?.to_owned();
    Ok(OrderRecord {
        order: order::Model {
            id: order_id,
            user_id: caller.user_id,
            status: OrderStatus::Pending,
            status_reason: None,
            currency: currency.clone(),
            total,
            shortages: None,
            placed_at: now,
            paid_at: None,
            shipped_at: None,
            delivered_at: None,
            updated_at: now,
            stock_reserved_at: None,
            reserve_asked_at: None,
        },
        items,
        payment: payment::Model {
            order_id,
            status: PaymentStatus::Pending,
            amount: total,
            currency,
            refunded: 0,
            provider_reference: None,
            captured_at: None,
            declined_at: None,
            created_at: now,
            updated_at: now,
        },
    })
}

/// The order a key already placed, in its current state.
async fn existing(ctx: &Context, order_id: Uuid) -> Result<OrderRecord, ServiceError> {
    Ok(store::load(&ctx.db, order_id)
        .await?
        .with_context(|| format!("idempotency key bound to a missing order {order_id}"))?)
}

#[cfg(test)]
mod tests {
    use shop_proto::pb::order::{OrderLine, OrderLines};

    use super::*;

    fn lines(lines: &[(&str, u32)]) -> Option<Source> {
        Some(Source::Items(OrderLines {
            lines: lines
                .iter()
                .map(|(id, quantity)| OrderLine {
                    product_id: (*id).to_owned(),
                    quantity: *quantity,
                })
                .collect(),
        }))
    }

    const A: &str = "0190f5a4-0000-7000-8000-00000000000a";
    const B: &str = "0190f5a4-0000-7000-8000-00000000000b";

    #[test]
    fn lines_of_one_product_merge_in_first_seen_order() {
        let wanted = match Wanted::parse(lines(&[(B, 1), (A, 2), (B, 3)])) {
            Ok(Wanted::Lines(lines)) => lines.iter().map(|l| (l.product_id.to_string(), l.quantity)).collect(),
            _ => Vec::new(),
        };
        assert_eq!(wanted, vec![(B.to_owned(), 4), (A.to_owned(), 2)]);
    }

    #[test]
    fn equal_requests_have_equal_canonical_forms() {
        let one = Wanted::parse(lines(&[(A, 2), (B, 1)])).map(|w| w.canonical()).ok();
        let two = Wanted::parse(lines(&[(B, 1), (A, 1), (A, 1)]))
            .map(|w| w.canonical())
            .ok();
        let other = Wanted::parse(lines(&[(A, 3), (B, 1)])).map(|w| w.canonical()).ok();
        assert_eq!(one, two);
        assert_ne!(one, other);
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        let too_many: Vec<(&str, u32)> = (0..101).map(|_| (A, 1)).collect();
        for source in [
            None,
            Some(Source::FromCart(false)),
            lines(&[]),
            lines(&[(A, 0)]),
            lines(&[("not-a-uuid", 1)]),
            lines(&[(A, u32::MAX), (A, 1)]),
            lines(&too_many),
        ] {
            let error = Wanted::parse(source.clone()).err();
            assert!(
                matches!(error, Some(ServiceError::InvalidArgument { .. })),
                "{source:?} gave {error:?}"
            );
        }
    }
}
