//! The server span of each request (OpenTelemetry HTTP semantic conventions), parented
//! to the client's W3C `traceparent` when it sends one. Disabled (and free) unless
//! traces are exported.
//!
//! [`RequestSpanLayer`] opens the span, enters it while the layers below are called (so
//! the Python side finds it as the current span), instruments their response future,
//! records the status, and puts the ids in the request's extensions ([`TraceIds`]) for
//! the access log.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{header, Request, Response, StatusCode, Version};
use opentelemetry::propagation::Extractor;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::instrument::Instrumented;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::SPAN_TARGET;
use crate::types::{ConnectionInfo, TraceIds};

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
fn request_span(parts: &Parts, info: &ConnectionInfo) -> tracing::Span {
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
fn record_status(span: &tracing::Span, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// Adds [`RequestSpan`] to a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSpan { inner }
    }
}

/// Runs each request inside its server span.
#[derive(Clone, Debug)]
pub struct RequestSpan<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for RequestSpan<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let info = parts
            .extensions
            .get::<ConnectionInfo>()
            .copied()
            .unwrap_or(ConnectionInfo {
                peer: None,
                local: None,
                scheme: "http",
            });
        let span = request_span(&parts, &info);
        if let Some((trace_id, span_id)) = super::trace_ids::of(&span) {
            parts.extensions.insert(TraceIds { trace_id, span_id });
        }
        let request = Request::from_parts(parts, body);
        let future = span.in_scope(|| self.inner.call(request));
        ResponseFuture {
            inner: future.instrument(span),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestSpan`]: records the status on the span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        let output = std::task::ready!(inner.as_mut().poll(cx));
        if let Ok(response) = &output {
            record_status(inner.span(), response.status());
        }
        Poll::Ready(output)
    }
}
