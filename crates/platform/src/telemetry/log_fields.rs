//! How JSON log lines keep the fields of their spans: as one JSON object per span, built when
//! the span is made and extended in place when a field is recorded later.
//!
//! `tracing-subscriber`'s own JSON field format parses the object back and writes it out again
//! for every later `record` (a request span records its route, caller and status that way):
//! at tens of thousands of requests a second that was an eighth of the gateway's CPU. Here a
//! recorded field is appended to the object instead; should a field be recorded twice, the
//! object holds both and a reader keeps the last, as JSON parsers do. The `otel.*` fields
//! (`otel.name`, `otel.kind`, `otel.status_code`) are instructions to the OpenTelemetry layer
//! and stay out of the log lines.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FormatFields, FormattedFields, format::Writer},
};

/// The field format of JSON log lines (see the module's documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut object = String::from("{");
        append(&mut object, fields)?;
        object.push('}');
        writer.write_str(&object)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let object = &mut current.fields;
        // What `format_fields` wrote is `{…}`; anything else (nothing yet) starts a new object.
        if object.ends_with('}') {
            object.pop();
        } else {
            object.clear();
            object.push('{');
        }
        append(object, fields)?;
        object.push('}');
        Ok(())
    }
}

/// Appends `"name":value` entries to an object whose closing brace is not written yet.
fn append(object: &mut String, fields: impl RecordFields) -> fmt::Result {
    let mut entries = Entries {
        first: object.ends_with('{'),
        object,
        result: Ok(()),
    };
    fields.record(&mut entries);
    entries.result
}

struct Entries<'a> {
    object: &'a mut String,
    first: bool,
    result: fmt::Result,
}

impl Entries<'_> {
    fn entry(&mut self, field: &Field, value: impl serde::Serialize) {
        let name = field.name();
        if name.starts_with("otel.") || self.result.is_err() {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.object.push(',');
        }
        self.result = write_json(self.object, name).and_then(|()| {
            self.object.push(':');
            write_json(self.object, value)
        });
    }
}

fn write_json(out: &mut String, value: impl serde::Serialize) -> fmt::Result {
    let json = serde_json::to_string(&value).map_err(|_| fmt::Error)?;
    out.write_str(&json)
}

impl Visit for Entries<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};
    use tracing::field::Empty;
    use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt as _};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Self;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The JSON log line of one event written inside a span whose fields are recorded in
    /// steps, as a request's span is.
    fn logged_line() -> Value {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(lines.clone())
                .event_format(tracing_subscriber::fmt::format().json().with_current_span(true))
                .fmt_fields(JsonSpanFields),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "http.server",
                otel.name = "GET",
                otel.kind = "server",
                url.path = "/api/v1/products/\"quoted\"",
                http.route = Empty,
                enduser.id = Empty,
                http.response.status_code = Empty,
            );
            span.record("http.route", "/api/v1/products/{id}");
            span.record("otel.name", "GET /api/v1/products/{id}");
            span.record("enduser.id", tracing::field::display("0190a6c2-user"));
            span.record("http.response.status_code", 200_u64);
            span.record("http.response.status_code", 304_u64);
            span.in_scope(|| tracing::info!(answered = true, "done"));
        });
        let bytes = lines.0.lock().unwrap().clone();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn fields_recorded_later_join_the_spans_object_and_the_last_value_wins() {
        let line = logged_line();
        assert_eq!(
            line["span"],
            json!({
                "name": "http.server",
                "url.path": "/api/v1/products/\"quoted\"",
                "http.route": "/api/v1/products/{id}",
                "enduser.id": "0190a6c2-user",
                "http.response.status_code": 304,
            }),
            "{line}"
        );
        assert_eq!(line["fields"]["answered"], json!(true), "{line}");
    }

    #[test]
    fn the_opentelemetry_instructions_stay_out_of_the_log() {
        let line = logged_line().to_string();
        assert!(!line.contains("otel."), "{line}");
    }
}
