//! The consumer's side of exactly-once effects: before applying a message, a consumer records
//! its id in `inbox` inside the same transaction as the effects. A redelivered or republished
//! message finds its id already there and changes nothing.

use sea_orm::{ConnectionTrait, DbErr, Statement};

/// Records `message_id` as applied, inside the caller's transaction. `true` the first time;
/// `false` if it was applied before (then the caller skips its effects and just acks).
pub async fn first_delivery<C: ConnectionTrait>(conn: &C, message_id: &str) -> Result<bool, DbErr> {
    let backend = conn.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "INSERT INTO inbox (message_id, processed_at) VALUES ($1, $2) ON CONFLICT (message_id) DO NOTHING"
            }
            _ => "INSERT INTO inbox (message_id, processed_at) VALUES (?, ?) ON CONFLICT (message_id) DO NOTHING",
        },
        [message_id.into(), chrono::Utc::now().into()],
    );
    Ok(conn.execute_raw(statement).await?.rows_affected() == 1)
}
