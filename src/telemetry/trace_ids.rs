//! `trace_id` and `span_id` in JSON log lines: a log event made while a request's span
//! is current (on the I/O thread or the Python thread serving it) names the trace, so
//! a log collector can join the lines of one request to its trace.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The W3C ids of the current span, when traces are exported and a span is current.
pub fn current() -> Option<(String, String)> {
    if !super::tracing_enabled() {
        return None;
    }
    of(&tracing::Span::current())
}

/// The W3C ids of `span`, if it is exported.
pub fn of(span: &tracing::Span) -> Option<(String, String)> {
    if span.is_none() || span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// tracing-subscriber's JSON lines, plus `"trace_id"` and `"span_id"` inside a span.
pub struct JsonWithTraceIds(pub Format<Json>);

impl<S> FormatEvent<S, JsonFields> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current() else {
            return self.0.format_event(context, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.0
            .format_event(context, Writer::new(&mut line), event)?;
        // The JSON formatter writes one object and a newline: add the ids inside it.
        match line.trim_end().strip_suffix('}') {
            Some(object) => {
                let separator = if object.ends_with('{') { "" } else { "," };
                writeln!(
                    writer,
                    "{object}{separator}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                )
            }
            None => writer.write_str(&line),
        }
    }
}
