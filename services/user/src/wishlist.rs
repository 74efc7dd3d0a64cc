//! The caller's wishlist: products saved for later, one item per product, at most
//! [`MAX_ITEMS`] of them so that a listing's product details come in one catalog call. Items
//! are always looked up together with the caller's id: another user's item is NOT_FOUND.

use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _,
};
use shop_platform::grpc::convert::parse_uuid;
use shop_platform::grpc::{error::ServiceError, identity::Caller};
use shop_proto::pb::catalog::Product;
use uuid::Uuid;

use crate::{
    catalog::{self, MAX_BATCH},
    context::Context,
    domain,
    entity::wishlist_item,
    sessions::now,
    users,
};

/// The most items one wishlist holds.
pub const MAX_ITEMS: usize = MAX_BATCH;

/// A wishlist item with its product's live details (`None` when the product is gone).
#[derive(Debug, Clone)]
pub struct WishlistEntry {
    /// The stored item.
    pub item: wishlist_item::Model,
    /// The product as the catalog has it now.
    pub product: Option<Product>,
}

fn full() -> ServiceError {
    ServiceError::FailedPrecondition {
        code: "wishlist_full",
        message: format!("a wishlist holds at most {MAX_ITEMS} items; remove some first"),
    }
}

impl Context {
    /// The caller's wishlist, newest item first, with one catalog call for every product.
    pub async fn list_wishlist(&self, caller: &Caller) -> Result<Vec<WishlistEntry>, ServiceError> {
        let items = wishlist_item::Entity::find()
            .filter(wishlist_item::Column::UserId.eq(caller.user_id))
            .order_by_desc(wishlist_item::Column::CreatedAt)
            .order_by_desc(wishlist_item::Column::Id)
            .all(&self.db)
            .await?;
        let products = self
            .catalog
            .products(caller, items.iter().map(|item| item.product_id))
            .await?;
        Ok(items
            .into_iter()
            .map(|item| WishlistEntry {
                product: catalog::shown(products.get(&item.product_id)),
                item,
            })
            .collect())
    }

    /// Adds a product (with `quantity`, default 1); a product already listed keeps its item,
    /// returned with `false`.
    #[tracing::instrument(skip_all, fields(user = %caller.user_id))]
    pub async fn add_wishlist_item(
        &self,
        caller: &Caller,
        product_id: &str,
        quantity: Option<u32>,
    ) -> Result<(WishlistEntry, bool), ServiceError> {
        let product_id = parse_uuid(product_id, "product_id")?;
        let quantity = domain::quantity(quantity.unwrap_or(1))?;
        let product = self.catalog.listed_product(caller, product_id).await?;
        if let Some(item) = self.find_wishlist_product(caller.user_id, product_id).await? {
            return Ok((entry(item, &product), false));
        }
        // Deleted accounts keep no rows: refuse to create one for a caller who no longer exists.
        users::get(&self.db, caller.user_id).await?;
        if self.wishlist_len(caller.user_id).await? >= MAX_ITEMS as u64 {
            return Err(full());
        }
        let inserted = wishlist_item::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(caller.user_id),
            product_id: Set(product_id),
            quantity: Set(quantity),
            created_at: Set(now()),
        }
        .insert(&self.db)
        .await;
        let item = match inserted {
            Ok(item) => item,
            Err(error) if users::is_duplicate(&error) => {
                // Added concurrently by another request: that item is the answer.
                let item = self
                    .find_wishlist_product(caller.user_id, product_id)
                    .await?
                    .ok_or_else(|| ServiceError::Unexpected(error.into()))?;
                return Ok((entry(item, &product), false));
            }
            Err(error) => return Err(error.into()),
        };
        // Concurrent additions may overshoot the cap between count and insert: undo ours then.
        if self.wishlist_len(caller.user_id).await? > MAX_ITEMS as u64 {
            wishlist_item::Entity::delete_by_id(item.id).exec(&self.db).await?;
            return Err(full());
        }
        Ok((entry(item, &product), true))
    }

    /// Sets the wished quantity of one of the caller's items.
    pub async fn update_wishlist_item(
        &self,
        caller: &Caller,
        item_id: &str,
        quantity: u32,
    ) -> Result<WishlistEntry, ServiceError> {
        let item_id = parse_uuid(item_id, "item_id")?;
        let quantity = domain::quantity(quantity)?;
        let item = self.own_wishlist_item(caller.user_id, item_id).await?;
        let products = self.catalog.products(caller, [item.product_id]).await?;
        let updated = wishlist_item::Entity::update_many()
            .col_expr(
                wishlist_item::Column::Quantity,
                sea_orm::sea_query::Expr::value(quantity),
            )
            .filter(wishlist_item::Column::Id.eq(item_id))
            .filter(wishlist_item::Column::UserId.eq(caller.user_id))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            return Err(not_found());
        }
        Ok(WishlistEntry {
            product: catalog::shown(products.get(&item.product_id)),
            item: wishlist_item::Model { quantity, ..item },
        })
    }

    /// Removes one of the caller's items.
    pub async fn remove_wishlist_item(&self, caller: &Caller, item_id: &str) -> Result<(), ServiceError> {
        let item_id = parse_uuid(item_id, "item_id")?;
        let removed = wishlist_item::Entity::delete_many()
            .filter(wishlist_item::Column::Id.eq(item_id))
            .filter(wishlist_item::Column::UserId.eq(caller.user_id))
            .exec(&self.db)
            .await?;
        if removed.rows_affected == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    async fn own_wishlist_item(&self, user: Uuid, item_id: Uuid) -> Result<wishlist_item::Model, ServiceError> {
        wishlist_item::Entity::find()
            .filter(wishlist_item::Column::Id.eq(item_id))
            .filter(wishlist_item::Column::UserId.eq(user))
            .one(&self.db)
            .await?
            .ok_or_else(not_found)
    }

    async fn find_wishlist_product(
        &self,
        user: Uuid,
        product: Uuid,
    ) -> Result<Option<wishlist_item::Model>, ServiceError> {
        Ok(wishlist_item::Entity::find()
            .filter(wishlist_item::Column::UserId.eq(user))
            .filter(wishlist_item::Column::ProductId.eq(product))
            .one(&self.db)
            .await?)
    }

    async fn wishlist_len(&self, user: Uuid) -> Result<u64, ServiceError> {
        Ok(wishlist_item::Entity::find()
            .filter(wishlist_item::Column::UserId.eq(user))
            .count(&self.db)
            .await?)
    }
}

fn entry(item: wishlist_item::Model, product: &Product) -> WishlistEntry {
    WishlistEntry {
        item,
        product: Some(product.clone()),
    }
}

fn not_found() -> ServiceError {
    ServiceError::not_found("no such wishlist item")
}
