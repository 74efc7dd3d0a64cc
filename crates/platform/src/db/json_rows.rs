//! Many rows in one INSERT whose text does not depend on how many rows there are, on
//! PostgreSQL: `INSERT INTO "t" ("a", "b") SELECT "a", "b" FROM jsonb_populate_recordset(NULL::"t", $1)`
//! with the rows as one JSON array, each value converted by its column's own type.
//!
//! Why: a multi-row `VALUES` list has one text per row count, and a service's batches come in
//! every size from 1 to 50; each connection keeps 100 prepared statements, so under a flash
//! sale a quarter to a half of the statements were prepared again first (PostgreSQL's log),
//! each preparation a round trip and a parse. One text per table is prepared once per
//! connection.
//!
//! Only values whose JSON form PostgreSQL reads back exactly are sent this way (booleans,
//! integers, text, UUIDs, byte strings, JSON, dates and timestamps to the microsecond); a row
//! set holding anything else, or rows that set different columns, is left to the `VALUES`
//! form.

use sea_orm::{
    ActiveModelTrait, DatabaseBackend, EntityTrait, Iterable as _, Value,
    sea_query::{Alias, Expr, Func, InsertStatement, Query},
};
use std::fmt::Write as _;

use serde_json::Value as Json;

/// The columns `rows` set and each row's values for them, in one pass, or `None` when the rows
/// set different columns (then sea-orm's own multi-row insert, which fills the gaps with
/// `DEFAULT`, is the one to use). The others take their column defaults, as in a `VALUES` list
/// that leaves them out.
#[allow(clippy::type_complexity)]
pub fn model_rows<A: ActiveModelTrait>(
    rows: &[A],
) -> Option<(Vec<<A::Entity as EntityTrait>::Column>, Vec<Vec<Value>>)> {
    let all: Vec<<A::Entity as EntityTrait>::Column> = <A::Entity as EntityTrait>::Column::iter().collect();
    // The positions (in `all`) of the columns the first row sets; every row must set the same.
    let mut set: Option<Vec<usize>> = None;
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        let mut positions = Vec::with_capacity(all.len());
        let mut row_values = Vec::with_capacity(all.len());
        for (position, column) in all.iter().enumerate() {
            if let Some(value) = row.get(*column).into_value() {
                positions.push(position);
                row_values.push(value);
            }
        }
        match &set {
            None => set = Some(positions),
            Some(first) if *first == positions => {}
            Some(_) => return None,
        }
        values.push(row_values);
    }
    let columns: Vec<_> = set?.into_iter().map(|position| all[position]).collect();
    (!columns.is_empty()).then_some((columns, values))
}

/// Gives `insert` (into `table`, its `columns` already named in this order) its `rows`: on
/// PostgreSQL as one JSON array, so that the statement's text is the same for any number of
/// rows; on SQLite, or for values not sent that way, as a `VALUES` list. What follows the rows
/// (`ON CONFLICT`, `RETURNING`) is the caller's, as with `VALUES`.
pub fn fill_insert(
    insert: &mut InsertStatement,
    backend: DatabaseBackend,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) {
    if backend == DatabaseBackend::Postgres
        && let Some(array) = json_array(columns, rows.iter().cloned())
    {
        let source = Func::cust(Alias::new("jsonb_populate_recordset"))
            .arg(Expr::cust(format!("NULL::\"{table}\"")))
            .arg(Expr::val(Value::Json(Some(Box::new(array)))));
        let mut select = Query::select();
        for column in columns {
            select.column(Alias::new(*column));
        }
        select.from_function(source, Alias::new("row"));
        if insert.select_from(select).is_ok() {
            return;
        }
    }
    for row in rows {
        insert.values_panic(row.into_iter().map(Expr::val));
    }
}

/// `rows` (values in the order of `columns`) as a JSON array of objects, or `None` when a value
/// is of a kind not sent that way.
fn json_array<S: AsRef<str>>(columns: &[S], rows: impl IntoIterator<Item = Vec<Value>>) -> Option<Json> {
    let mut array = Vec::new();
    for row in rows {
        if row.len() != columns.len() {
            return None;
        }
        let mut object = serde_json::Map::with_capacity(columns.len());
        for (column, value) in columns.iter().zip(row) {
            object.insert(column.as_ref().to_owned(), to_json(value)?);
        }
        array.push(Json::Object(object));
    }
    Some(Json::Array(array))
}

/// `value` as PostgreSQL will read it back from JSON into a column of its type, or `None` for a
/// kind of value this is not sure of.
fn to_json(value: Value) -> Option<Json> {
    Some(match value {
        Value::Bool(v) => v.map_or(Json::Null, Json::Bool),
        Value::TinyInt(v) => v.map_or(Json::Null, Json::from),
        Value::SmallInt(v) => v.map_or(Json::Null, Json::from),
        Value::Int(v) => v.map_or(Json::Null, Json::from),
        Value::BigInt(v) => v.map_or(Json::Null, Json::from),
        Value::TinyUnsigned(v) => v.map_or(Json::Null, Json::from),
        Value::SmallUnsigned(v) => v.map_or(Json::Null, Json::from),
        Value::Unsigned(v) => v.map_or(Json::Null, Json::from),
        Value::BigUnsigned(v) => v.map_or(Json::Null, Json::from),
        Value::String(v) => v.map_or(Json::Null, Json::String),
        Value::Char(v) => v.map_or(Json::Null, |c| Json::String(c.to_string())),
        // bytea's text input: `\x` and hex digits.
        Value::Bytes(v) => v.map_or(Json::Null, |bytes| {
            let mut hex = String::with_capacity(2 + 2 * bytes.len());
            hex.push_str("\\x");
            for byte in bytes {
                // Writing to a String cannot fail.
                let _ = write!(hex, "{byte:02x}");
            }
            Json::String(hex)
        }),
        Value::Json(v) => v.map_or(Json::Null, |json| *json),
        Value::Uuid(v) => v.map_or(Json::Null, |uuid| Json::String(uuid.to_string())),
        Value::ChronoDate(v) => v.map_or(Json::Null, |date| Json::String(date.format("%Y-%m-%d").to_string())),
        // Microseconds, truncated as the binary form truncates them.
        Value::ChronoDateTimeUtc(v) => v.map_or(Json::Null, |at| {
            Json::String(at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        }),
        Value::ChronoDateTimeWithTimeZone(v) => v.map_or(Json::Null, |at| {
            Json::String(at.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string())
        }),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    #[test]
    fn values_take_the_text_form_postgresql_reads() {
        let at = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(
            to_json(Value::ChronoDateTimeUtc(Some(at))),
            Some(Json::String("2023-11-14T22:13:20.123456Z".into()))
        );
        assert_eq!(
            to_json(Value::Bytes(Some(vec![0, 15, 255]))),
            Some(Json::String("\\x000fff".into()))
        );
        assert_eq!(to_json(Value::BigInt(Some(i64::MAX))), Some(Json::from(i64::MAX)));
        assert_eq!(to_json(Value::String(None)), Some(Json::Null));
        assert_eq!(to_json(Value::Double(Some(0.5))), None);
    }
}
