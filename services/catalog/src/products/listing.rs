//! ListProducts: the checked filter, its keyset query (newest first by `(created_at, id)`), and
//! its cursors. A cursor is the last row's key, bound to the filters it was issued for.

use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, LikeExpr, extension::postgres::PgExpr},
};
use shop_platform::grpc::convert::parse_uuid;
use shop_platform::{grpc::error::ServiceError, paging};
use shop_proto::pb::catalog as pb;
use uuid::Uuid;

use super::input::{self, MAX_QUERY_CHARS};
use crate::{entity::product, migration::LISTED};

/// A checked ListProducts request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListFilter {
    /// Case-insensitive substring of the name or description; `None` for no text filter.
    pub query: Option<String>,
    /// Lowest price amount.
    pub min_price: Option<i64>,
    /// Highest price amount.
    pub max_price: Option<i64>,
    /// Only products with stock.
    pub in_stock: bool,
    /// Only this seller's products.
    pub seller_id: Option<Uuid>,
    /// Page size.
    pub limit: u64,
    /// Continue after this row (`None`: first page).
    pub after: Option<paging::Position>,
}

impl ListFilter {
    /// Checks a request: price bounds, limit, seller id and cursor.
    pub fn parse(request: &pb::ListProductsRequest) -> Result<Self, ServiceError> {
        let query = request.query.trim();
        input::plain_text(query, "query", false)?;
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(ServiceError::invalid(format!(
                "query is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let min_price = request
            .min_price
            .map(|p| input::price_bound(p, "min_price"))
            .transpose()?;
        let max_price = request
            .max_price
            .map(|p| input::price_bound(p, "max_price"))
            .transpose()?;
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(ServiceError::invalid(format!(
                "min_price {min} is above max_price {max}"
            )));
        }
        let seller_id = match request.seller_id.trim() {
            "" => None,
            raw => Some(parse_uuid(raw, "seller_id")?),
        };
        let page = request.page.clone().unwrap_or_default();
        let mut filter = Self {
            query: (!query.is_empty()).then(|| query.to_owned()),
            min_price,
            max_price,
            in_stock: request.in_stock,
            seller_id,
            limit: paging::limit(page.limit)?,
            after: None,
        };
        filter.after = paging::decode_cursor(&page.cursor, &filter.scope())?;
        Ok(filter)
    }

    /// What a cursor is bound to: the rpc and every filter (not the page size, which may vary
    /// from page to page).
    fn scope(&self) -> String {
        format!(
            "shop.catalog.v1.ListProducts|{:?}|{:?}|{:?}|{}|{:?}",
            self.query, self.min_price, self.max_price, self.in_stock, self.seller_id
        )
    }

    /// The cursor of the page after `last`.
    pub fn cursor_after(&self, last: &product::Model) -> String {
        self.encode(&paging::position(last.created_at, last.id))
    }

    /// The cursor of the page after `position`.
    fn encode(&self, position: &paging::Position) -> String {
        paging::encode_cursor(position, &self.scope())
    }
}

/// One page of listed products, and the cursor of the next page if there is one.
pub async fn list(
    db: &DatabaseConnection,
    filter: &ListFilter,
) -> Result<(Vec<product::Model>, Option<String>), ServiceError> {
    use product::Column;
    let backend = db.get_database_backend();
    let mut select = product::Entity::find().filter(Expr::cust(LISTED));
    if let Some(query) = &filter.query {
        let pattern = like_pattern(query);
        let text = match backend {
            // PostgreSQL's LIKE escape character is the backslash by default.
            DatabaseBackend::Postgres => Condition::any()
                .add(Expr::col(Column::Name).ilike(LikeExpr::new(pattern.clone())))
                .add(Expr::col(Column::Description).ilike(LikeExpr::new(pattern))),
            // SQLite's LIKE ignores case already (for ASCII letters), and has no default escape.
            _ => Condition::any()
                .add(Expr::col(Column::Name).like(LikeExpr::new(pattern.clone()).escape('\\')))
                .add(Expr::col(Column::Description).like(LikeExpr::new(pattern).escape('\\'))),
        };
        select = select.filter(text);
    }
    if let Some(min) = filter.min_price {
        select = select.filter(Column::PriceAmount.gte(min));
    }
    if let Some(max) = filter.max_price {
        select = select.filter(Column::PriceAmount.lte(max));
    }
    if filter.in_stock {
        select = select.filter(Column::Stock.gt(0));
    }
    if let Some(seller) = filter.seller_id {
        select = select.filter(Column::SellerId.eq(seller));
    }
    let (rows, next) = paging::newest_first(
        db,
        select,
        (Column::CreatedAt, Column::Id),
        filter.after,
        filter.limit,
        |row| paging::position(row.created_at, row.id),
    )
    .await?;
    Ok((rows, next.map(|position| filter.encode(&position))))
}

/// `%text%` with LIKE's wildcards in `text` taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use shop_proto::pb::common::PageRequest;

    use super::*;

    #[test]
    fn wildcards_are_literal() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn bad_bounds_and_foreign_cursors_are_refused() {
        let request = |min, max, cursor: &str| pb::ListProductsRequest {
            min_price: min,
            max_price: max,
            page: Some(PageRequest {
                limit: 0,
                cursor: cursor.into(),
            }),
            ..Default::default()
        };
        assert!(ListFilter::parse(&request(Some(-1), None, "")).is_err());
        assert!(ListFilter::parse(&request(Some(5), Some(4), "")).is_err());
        let filter = ListFilter::parse(&request(Some(1), None, "")).ok();
        assert_eq!(filter.as_ref().map(|f| f.limit), Some(20));
        let row = product::Model {
            id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            name: "n".into(),
            description: String::new(),
            price_amount: 1,
            currency: "KRW".into(),
            stock: 1,
            visible: true,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            deleted_at: None,
        };
        let cursor = filter.map(|f| f.cursor_after(&row)).unwrap_or_default();
        assert!(ListFilter::parse(&request(Some(1), None, &cursor)).is_ok());
        let error = ListFilter::parse(&request(Some(2), None, &cursor)).err();
        assert_eq!(error.map(|e| e.machine_code()), Some("invalid_cursor"));
    }
}
