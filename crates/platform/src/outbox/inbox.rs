//! The consumer's side of exactly-once effects: before applying a message, a consumer records
//! its id in `inbox` inside the same transaction as the effects. A redelivered or republished
//! message finds its id already there and changes nothing.

use std::collections::HashSet;

use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{OnConflict, Query},
};

use crate::db::{INSERT_CHUNK, fill_insert};

/// Records `message_id` as applied, inside the caller's transaction. `true` the first time;
/// `false` if it was applied before (then the caller skips its effects and just acks).
pub async fn first_delivery<C: ConnectionTrait>(conn: &C, message_id: &str) -> Result<bool, DbErr> {
    Ok(!claim(conn, &[message_id]).await?.is_empty())
}

/// Records a batch of message ids as applied, inside the caller's transaction, and returns those
/// seen for the first time (the others were applied before). Ids are written sorted, so
/// consumers claiming overlapping batches at once never wait on each other in a cycle.
pub async fn claim<C: ConnectionTrait>(conn: &C, message_ids: &[&str]) -> Result<HashSet<String>, DbErr> {
    let mut ids: Vec<&str> = message_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let now = chrono::Utc::now();
    let mut claimed = HashSet::new();
    for chunk in ids.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table("inbox").columns(["message_id", "processed_at"]);
        let rows = chunk.iter().map(|id| vec![(*id).into(), now.into()]).collect();
        fill_insert(
            &mut insert,
            conn.get_database_backend(),
            "inbox",
            &["message_id", "processed_at"],
            rows,
        );
        insert
            .on_conflict(OnConflict::column("message_id").do_nothing().to_owned())
            .returning_col("message_id");
        for row in conn.query_all(&insert).await? {
            claimed.insert(row.try_get::<String>("", "message_id")?);
        }
    }
    Ok(claimed)
}
