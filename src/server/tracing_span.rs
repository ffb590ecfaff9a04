//! The server span of each request (OpenTelemetry HTTP semantic conventions), parented
//! to the client's W3C `traceparent` when it sends one. Disabled (and free) unless
//! traces are exported.

use http::request::Parts;
use http::{header, StatusCode, Version};
use opentelemetry::propagation::Extractor;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::ConnectionInfo;
use crate::telemetry::SPAN_TARGET;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span for one request; disabled when traces are not exported.
pub fn request_span(parts: &Parts, info: &ConnectionInfo) -> tracing::Span {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "HTTP request",
        otel.name = %parts.method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %parts.method,
        http.response.status_code = Empty,
        url.path = parts.uri.path(),
        url.scheme = info.scheme,
        client.address = Empty,
        server.address = Empty,
        user_agent.original = Empty,
        network.protocol.version = match parts.version {
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2",
            _ => "1.1",
        },
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(peer) = info.peer {
        span.record("client.address", peer.ip().to_string());
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.host());
    if let Some(host) = host {
        span.record(
            "server.address",
            host.rsplit_once(':').map_or(host, |(h, _)| h),
        );
    }
    if let Some(agent) = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.record("user_agent.original", agent);
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(&parts.headers))
    });
    let _ = span.set_parent(parent);
    span
}

/// Record the response status on the span (5xx marks it as an error).
pub fn record_status(span: &tracing::Span, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
