//! Products: the rules of who may read and write what (docs/architecture.md and the visibility rules of
//! shop/catalog/v1/catalog.proto), on checked input, with errors as [`ServiceError`]s.

pub mod input;
pub mod listing;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr,
};
use shop_platform::db::one_of;
use shop_platform::grpc::{
    error::ServiceError,
    identity::{Caller, Role},
};
use uuid::Uuid;

use crate::entity::product;
use input::{NewProduct, ProductPatch};
use listing::ListFilter;

/// Now, at the database's precision (microseconds), so that what a write returns equals what a
/// later read returns.
pub(crate) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn not_found() -> ServiceError {
    ServiceError::not_found("no such product")
}

/// The product operations.
#[derive(Clone, Debug)]
pub struct Products {
    db: DatabaseConnection,
}

impl Products {
    /// Products stored in `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Creates a product owned by `caller` (a seller or an admin).
    #[tracing::instrument(skip(self, new), fields(caller = %caller.user_id))]
    pub async fn create(&self, caller: &Caller, new: NewProduct) -> Result<product::Model, ServiceError> {
        caller.require_role(&[Role::Seller, Role::Admin])?;
        let now = now();
        let row = product::ActiveModel {
            id: Set(Uuid::now_v7()),
            seller_id: Set(caller.user_id),
            name: Set(new.name),
            description: Set(new.description),
            price_amount: Set(new.price_amount),
            currency: Set(new.currency),
            stock: Set(new.stock),
            visible: Set(new.visible),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        };
        Ok(row.insert(&self.db).await?)
    }

    /// One product, as `caller` (maybe anonymous) may see it.
    pub async fn get(&self, caller: Option<&Caller>, id: Uuid) -> Result<product::Model, ServiceError> {
        let row = product::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .filter(|row| row.deleted_at.is_none())
            .ok_or_else(not_found)?;
        let privileged = caller.is_some_and(|c| c.is_admin() || c.user_id == row.seller_id);
        if row.visible || privileged {
            Ok(row)
        } else {
            Err(not_found())
        }
    }

    /// The known products among `ids`, hidden and deleted ones included.
    pub async fn batch_get(&self, ids: Vec<Uuid>) -> Result<Vec<product::Model>, ServiceError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(product::Entity::find()
            .filter(one_of(self.db.get_database_backend(), product::Column::Id, ids))
            .all(&self.db)
            .await?)
    }

    /// A page of listed products.
    pub async fn list(&self, filter: &ListFilter) -> Result<(Vec<product::Model>, Option<String>), ServiceError> {
        listing::list(&self.db, filter).await
    }

    /// Applies `patch` to a product `caller` may write.
    #[tracing::instrument(skip(self, patch), fields(caller = %caller.user_id))]
    pub async fn update(&self, caller: &Caller, id: Uuid, patch: ProductPatch) -> Result<product::Model, ServiceError> {
        self.writable(caller, id).await?;
        let mut update = product::Entity::update_many().col_expr(product::Column::UpdatedAt, Expr::value(now()));
        if let Some(name) = patch.name {
            update = update.col_expr(product::Column::Name, Expr::value(name));
        }
        if let Some(description) = patch.description {
            update = update.col_expr(product::Column::Description, Expr::value(description));
        }
        if let Some(amount) = patch.price_amount {
            update = update.col_expr(product::Column::PriceAmount, Expr::value(amount));
        }
        if let Some(currency) = patch.currency {
            update = update.col_expr(product::Column::Currency, Expr::value(currency));
        }
        if let Some(visible) = patch.visible {
            update = update.col_expr(product::Column::Visible, Expr::value(visible));
        }
        self.apply(update, id).await
    }

    /// Deletes a product softly.
    #[tracing::instrument(skip(self), fields(caller = %caller.user_id))]
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<(), ServiceError> {
        self.writable(caller, id).await?;
        let now = now();
        let update = product::Entity::update_many()
            .col_expr(product::Column::DeletedAt, Expr::value(Some(now)))
            .col_expr(product::Column::UpdatedAt, Expr::value(now));
        self.apply(update, id).await.map(drop)
    }

    /// Sets a product's available stock.
    #[tracing::instrument(skip(self), fields(caller = %caller.user_id))]
    pub async fn set_stock(&self, caller: &Caller, id: Uuid, stock: i64) -> Result<product::Model, ServiceError> {
        self.writable(caller, id).await?;
        let update = product::Entity::update_many()
            .col_expr(product::Column::Stock, Expr::value(stock))
            .col_expr(product::Column::UpdatedAt, Expr::value(now()));
        self.apply(update, id).await
    }

    /// NOT_FOUND unless the product exists and is not deleted; PERMISSION_DENIED unless
    /// `caller` is its seller or an admin. The seller never changes, so the check stays true
    /// for the write that follows.
    async fn writable(&self, caller: &Caller, id: Uuid) -> Result<(), ServiceError> {
        let row = product::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .filter(|row| row.deleted_at.is_none())
            .ok_or_else(not_found)?;
        if caller.is_admin() || caller.user_id == row.seller_id {
            Ok(())
        } else {
            Err(ServiceError::forbidden(
                "only the product's seller or an admin may change it",
            ))
        }
    }

    /// Runs `update` on the product unless it was deleted meanwhile, returning the row as
    /// stored (so the stock is the current one, not a stale read).
    async fn apply(
        &self,
        update: sea_orm::UpdateMany<product::Entity>,
        id: Uuid,
    ) -> Result<product::Model, ServiceError> {
        update
            .filter(product::Column::Id.eq(id))
            .filter(product::Column::DeletedAt.is_null())
            .exec_with_returning(&self.db)
            .await?
            .into_iter()
            .next()
            .ok_or_else(not_found)
    }
}
