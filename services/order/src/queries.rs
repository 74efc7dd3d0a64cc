//! Reading orders: one order (NOT_FOUND for another user's, unless the caller is an admin), and
//! lists newest first with keyset pagination on (placed_at, id), so orders placed while a client
//! pages neither repeat nor go missing.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use shop_platform::grpc::convert::parse_uuid;
use shop_platform::{
    grpc::{error::ServiceError, identity::Caller},
    paging,
};
use shop_proto::pb::order::ListOrdersRequest;

use crate::{
    access::{may_see, not_found},
    context::Context,
    entity::order,
    store::{self, OrderRecord},
};

/// One page of orders and the cursor of the next (empty on the last page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The orders, newest first.
    pub orders: Vec<OrderRecord>,
    /// Where the next page starts; empty when this one is the last.
    pub next_cursor: String,
}

/// The order `id`, if `caller` may see it.
pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<OrderRecord, ServiceError> {
    let id = parse_uuid(id, "order_id")?;
    store::load(&ctx.db, id)
        .await?
        .filter(|record| may_see(caller, record))
        .ok_or_else(not_found)
}

/// A page of the orders `caller` may list.
pub async fn list(ctx: &Context, caller: &Caller, request: &ListOrdersRequest) -> Result<Page, ServiceError> {
    let page = request.page.clone().unwrap_or_default();
    let limit = paging::limit(page.limit)?;
    let owner = if request.user_id.is_empty() {
        (!caller.is_admin()).then_some(caller.user_id)
    } else {
        let named = parse_uuid(&request.user_id, "user_id")?;
        if !caller.is_admin() && named != caller.user_id {
            return Err(ServiceError::forbidden("only admins list other users' orders"));
        }
        Some(named)
    };
    let scope = format!("orders/{}", owner.map(|id| id.to_string()).unwrap_or_default());
    let after = paging::decode_cursor(&page.cursor, &scope)?;
    let mut query = order::Entity::find();
    if let Some(owner) = owner {
        query = query.filter(order::Column::UserId.eq(owner));
    }
    let (rows, next) = paging::newest_first(
        &ctx.db,
        query,
        (order::Column::PlacedAt, order::Column::Id),
        after,
        limit,
        |row| paging::position(row.placed_at, row.id),
    )
    .await?;
    let next_cursor = next
        .map(|position| paging::encode_cursor(&position, &scope))
        .unwrap_or_default();
    Ok(Page {
        orders: store::complete(&ctx.db, rows).await?,
        next_cursor,
    })
}
