//! `orders stranded`: orders still `pending` long after they were placed, read from the order
//! service's schema with its own entities, on a read-only session; the schema is never created
//! (unlike a service starting). `orders repair`: what the order service's reconciler would do
//! to them in time, now (`shop_order::reconcile::repair`), on a session that may write.

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait as _, ConnectOptions, Database, DatabaseConnection, DbErr, EntityTrait as _, QueryFilter as _,
    QueryOrder as _,
};
use shop_order::{
    OrderService,
    entity::{OrderStatus, order},
};
use shop_platform::{config::redact_url, service::MeshService};

/// Connects to the order service's schema in the deployment's database, read-only unless
/// `writes` (repairs).
pub async fn connect(database_url: &str, writes: bool) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .set_schema_search_path(<OrderService as MeshService>::NAME.to_owned());
    if !writes {
        options.map_sqlx_postgres_opts(|options| options.options([("default_transaction_read_only", "on")]));
    }
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to {}", redact_url(database_url)))
}

/// Orders placed before `now - older_than` that are still pending, oldest first.
pub async fn stranded(
    db: &DatabaseConnection,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<order::Model>, DbErr> {
    let cutoff = chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let orders = order::Entity::find()
        .filter(order::Column::Status.eq(OrderStatus::Pending))
        .filter(order::Column::PlacedAt.lt(cutoff))
        .order_by_asc(order::Column::PlacedAt)
        .all(db)
        .await?;
    let ids: Vec<String> = orders.iter().map(|order| order.id.to_string()).collect();
    tracing::info!(action = "orders.stranded", ?older_than, count = orders.len(), order_ids = ?ids, "listed stranded orders");
    Ok(orders)
}

/// The orders as a table, with how long each has been pending.
pub fn render_stranded(orders: &[order::Model], now: DateTime<Utc>) -> String {
    let mut out = format!("{} pending order(s)\n", orders.len());
    if orders.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:<36}  {:<36}  {:<25}  {:>10}  total",
        "order", "user", "placed at", "pending"
    );
    for order in orders {
        let pending = (now - order.placed_at).to_std().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<36}  {:<36}  {:<25}  {:>10}  {} {}",
            order.id,
            order.user_id,
            order.placed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            age(pending),
            order.total,
            order.currency
        );
    }
    out
}

/// A duration in its largest whole unit and the next one: `3d4h`, `2h5m`, `45s`.
fn age(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// Repairs the stranded orders `which` names (see `shop_order::reconcile::repair`); returns
/// the orders acted on. Orders no longer pending, or already answered by the catalog, are left
/// alone.
pub async fn repair(
    db: &DatabaseConnection,
    queues: &shop_order::StockQueues,
    which: &crate::cli::Stranded,
    action: shop_order::reconcile::Repair,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<uuid::Uuid>> {
    let ids = match which {
        crate::cli::Stranded::Id(id) => vec![*id],
        crate::cli::Stranded::OlderThan(age) => stranded(db, *age, now).await?.iter().map(|order| order.id).collect(),
    };
    let repaired = shop_order::reconcile::repair(db, queues, &ids, action, now).await?;
    tracing::info!(action = "orders.repair", repair = ?action, count = repaired.len(), order_ids = ?repaired, "repaired stranded orders");
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(Duration::from_secs(45)), "45s");
        assert_eq!(age(Duration::from_secs(5 * 60 + 3)), "5m3s");
        assert_eq!(age(Duration::from_secs(2 * 3600 + 5 * 60)), "2h5m");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d4h");
    }
}
