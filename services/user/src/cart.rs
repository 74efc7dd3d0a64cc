//! The caller's cart: one line per product, at most [`MAX_LINES`] lines so that its product
//! details come in one catalog call, priced at the catalog's current prices in integer minor
//! units. Lines are always looked up together with the caller's id: another user's line is
//! NOT_FOUND. The cart reserves no stock; the order service checks stock when an order is placed.

use sea_orm::{
    ActiveModelTrait as _,
    ActiveValue::Set,
    ColumnTrait as _, Condition, ConnectionTrait, DbErr, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _,
    sea_query::{Expr, ExprTrait as _},
};
use shop_platform::db::one_of;
use shop_platform::grpc::convert::parse_uuid;
use shop_platform::grpc::{error::ServiceError, identity::Caller};
use shop_proto::pb::catalog::Product;
use uuid::Uuid;

use crate::{
    catalog::{self, MAX_BATCH},
    context::Context,
    domain::{self, MAX_QUANTITY},
    entity::cart_item,
    pricing::{self, Line, Totals},
    sessions::now,
    users,
};

/// The most lines one cart holds.
pub const MAX_LINES: usize = MAX_BATCH;

/// The cart with live product details and totals.
#[derive(Debug, Clone)]
pub struct CartView {
    /// The lines, oldest first.
    pub lines: Vec<Line>,
    /// The totals.
    pub totals: Totals,
}

fn full() -> ServiceError {
    ServiceError::FailedPrecondition {
        code: "cart_full",
        message: format!("a cart holds at most {MAX_LINES} lines; remove some first"),
    }
}

fn not_found() -> ServiceError {
    ServiceError::not_found("no such cart item")
}

fn line(item: cart_item::Model, product: Option<&Product>) -> Result<Line, ServiceError> {
    pricing::line(item, catalog::shown(product))
}

/// Removes the lines `item_ids` of `user`'s cart, which an order bought; lines gone already are
/// skipped, so applying this again changes nothing. Returns how many went.
pub async fn remove_bought<C: ConnectionTrait>(conn: &C, user: Uuid, item_ids: &[Uuid]) -> Result<u64, DbErr> {
    if item_ids.is_empty() {
        return Ok(0);
    }
    let removed = cart_item::Entity::delete_many()
        .filter(cart_item::Column::UserId.eq(user))
        .filter(one_of(
            conn.get_database_backend(),
            cart_item::Column::Id,
            item_ids.iter().copied(),
        ))
        .exec(conn)
        .await?;
    Ok(removed.rows_affected)
}

impl Context {
    /// The caller's cart lines as stored, oldest first: no catalog call, no prices.
    pub async fn cart_lines(&self, caller: &Caller) -> Result<Vec<cart_item::Model>, ServiceError> {
        Ok(cart_item::Entity::find()
            .filter(cart_item::Column::UserId.eq(caller.user_id))
            .order_by_asc(cart_item::Column::CreatedAt)
            .order_by_asc(cart_item::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The caller's cart, oldest line first, with one catalog call for every product.
    pub async fn cart(&self, caller: &Caller) -> Result<CartView, ServiceError> {
        let items = self.cart_lines(caller).await?;
        let products = self
            .catalog
            .products(caller, items.iter().map(|item| item.product_id))
            .await?;
        let lines = items
            .into_iter()
            .map(|item| {
                let product = products.get(&item.product_id);
                line(item, product)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let totals = pricing::totals(&lines)?;
        Ok(CartView { lines, totals })
    }

    /// Puts `quantity` of a product in the cart: added to its line, or a new line (`true`).
    #[tracing::instrument(skip_all, fields(user = %caller.user_id))]
    pub async fn add_cart_item(
        &self,
        caller: &Caller,
        product_id: &str,
        quantity: u32,
    ) -> Result<(Line, bool), ServiceError> {
        let product_id = parse_uuid(product_id, "product_id")?;
        let quantity = domain::quantity(quantity)?;
        let product = self.catalog.listed_product(caller, product_id).await?;
        // Refused before anything is written, so that no line is saved that the cart cannot price.
        if let Some(price) = &product.price {
            pricing::admissible(price, MAX_QUANTITY, MAX_LINES)?;
        }
        // Two rounds at most: a line created concurrently between our update and insert is
        // found by the second update.
        for _ in 0..2 {
            if let Some(item) = self.grow_cart_line(caller.user_id, product_id, quantity).await? {
                return Ok((line(item, Some(&product))?, false));
            }
            if self.find_cart_product(caller.user_id, product_id).await?.is_some() {
                return Err(ServiceError::invalid(format!(
                    "quantity: a cart line holds at most {MAX_QUANTITY}"
                )));
            }
            users::get(&self.db, caller.user_id).await?;
            if self.cart_len(caller.user_id).await? >= MAX_LINES as u64 {
                return Err(full());
            }
            let inserted = cart_item::ActiveModel {
                id: Set(Uuid::now_v7()),
                user_id: Set(caller.user_id),
                product_id: Set(product_id),
                quantity: Set(quantity),
                created_at: Set(now()),
            }
            .insert(&self.db)
            .await;
            match inserted {
                Ok(item) => {
                    // Concurrent additions may overshoot the cap: undo ours then.
                    if self.cart_len(caller.user_id).await? > MAX_LINES as u64 {
                        cart_item::Entity::delete_by_id(item.id).exec(&self.db).await?;
                        return Err(full());
                    }
                    return Ok((line(item, Some(&product))?, true));
                }
                Err(error) if users::is_duplicate(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(ServiceError::Aborted {
            code: "conflict",
            message: "the cart changed meanwhile; retry".to_owned(),
        })
    }

    /// Adds `quantity` to the caller's line of `product` if it exists and stays within bounds.
    async fn grow_cart_line(
        &self,
        user: Uuid,
        product: Uuid,
        quantity: i32,
    ) -> Result<Option<cart_item::Model>, ServiceError> {
        let room = i32::try_from(MAX_QUANTITY).unwrap_or(i32::MAX) - quantity;
        let grown = cart_item::Entity::update_many()
            .col_expr(
                cart_item::Column::Quantity,
                Expr::col(cart_item::Column::Quantity).add(quantity),
            )
            .filter(cart_item::Column::UserId.eq(user))
            .filter(cart_item::Column::ProductId.eq(product))
            .filter(cart_item::Column::Quantity.lte(room))
            .exec(&self.db)
            .await?;
        if grown.rows_affected == 0 {
            return Ok(None);
        }
        self.find_cart_product(user, product).await
    }

    /// Sets the quantity of one of the caller's lines.
    pub async fn update_cart_item(&self, caller: &Caller, item_id: &str, quantity: u32) -> Result<Line, ServiceError> {
        let item_id = parse_uuid(item_id, "item_id")?;
        let quantity = domain::quantity(quantity)?;
        let item = self.own_cart_item(caller.user_id, item_id).await?;
        let products = self.catalog.products(caller, [item.product_id]).await?;
        let product = products.get(&item.product_id);
        let priced = line(cart_item::Model { quantity, ..item }, product)?;
        if let Some(price) = product.and_then(|product| product.price.as_ref()) {
            pricing::admissible(price, MAX_QUANTITY, MAX_LINES)?;
        }
        let updated = cart_item::Entity::update_many()
            .col_expr(cart_item::Column::Quantity, Expr::value(quantity))
            .filter(cart_item::Column::Id.eq(item_id))
            .filter(cart_item::Column::UserId.eq(caller.user_id))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            return Err(not_found());
        }
        Ok(priced)
    }

    /// Removes one of the caller's lines.
    pub async fn remove_cart_item(&self, caller: &Caller, item_id: &str) -> Result<(), ServiceError> {
        let item_id = parse_uuid(item_id, "item_id")?;
        let removed = cart_item::Entity::delete_many()
            .filter(cart_item::Column::Id.eq(item_id))
            .filter(cart_item::Column::UserId.eq(caller.user_id))
            .exec(&self.db)
            .await?;
        if removed.rows_affected == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    /// Empties the caller's cart.
    pub async fn clear_cart(&self, caller: &Caller) -> Result<(), ServiceError> {
        cart_item::Entity::delete_many()
            .filter(cart_item::Column::UserId.eq(caller.user_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Removes the caller's lines of any of `product_ids` or with any of `item_ids`; returns how
    /// many went (ids matching nothing are ignored, so retries are harmless).
    pub async fn remove_cart_lines(
        &self,
        caller: &Caller,
        product_ids: &[String],
        item_ids: &[String],
    ) -> Result<u32, ServiceError> {
        let parse = |field, ids: &[String]| {
            ids.iter()
                .map(|id| parse_uuid(id, field))
                .collect::<Result<Vec<_>, _>>()
        };
        let products = parse("product_ids", product_ids)?;
        let items = parse("item_ids", item_ids)?;
        if products.is_empty() && items.is_empty() {
            return Ok(0);
        }
        if products.len() + items.len() > 1_000 {
            return Err(ServiceError::invalid("at most 1000 ids"));
        }
        let removed = cart_item::Entity::delete_many()
            .filter(cart_item::Column::UserId.eq(caller.user_id))
            .filter(
                Condition::any()
                    .add(one_of(
                        self.db.get_database_backend(),
                        cart_item::Column::ProductId,
                        products,
                    ))
                    .add(one_of(self.db.get_database_backend(), cart_item::Column::Id, items)),
            )
            .exec(&self.db)
            .await?;
        Ok(u32::try_from(removed.rows_affected).unwrap_or(u32::MAX))
    }

    async fn own_cart_item(&self, user: Uuid, item_id: Uuid) -> Result<cart_item::Model, ServiceError> {
        cart_item::Entity::find()
            .filter(cart_item::Column::Id.eq(item_id))
            .filter(cart_item::Column::UserId.eq(user))
            .one(&self.db)
            .await?
            .ok_or_else(not_found)
    }

    async fn find_cart_product(&self, user: Uuid, product: Uuid) -> Result<Option<cart_item::Model>, ServiceError> {
        Ok(cart_item::Entity::find()
            .filter(cart_item::Column::UserId.eq(user))
            .filter(cart_item::Column::ProductId.eq(product))
            .one(&self.db)
            .await?)
    }

    async fn cart_len(&self, user: Uuid) -> Result<u64, ServiceError> {
        Ok(cart_item::Entity::find()
            .filter(cart_item::Column::UserId.eq(user))
            .count(&self.db)
            .await?)
    }
}
