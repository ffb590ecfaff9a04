//! Native tower layers of wsgi-gateway. No Python here: every layer works on
//! `http::Request`/`http::Response` and can be tested around a `service_fn`.
//!
//! # Layout
//! - [`access_log`]: one line per response (combined, JSON, or gunicorn atoms), written
//!   off the request path.
//! - [`compression`]: gzip, br and zstd, negotiated with q-values, flushed when the
//!   inner body waits.
//! - [`auth`]: HTTP Basic against an htpasswd file, or Bearer tokens.
//! - [`static_files`]: files under a mount prefix, hot small ones from a bounded
//!   in-memory cache (revalidated within a second), with ETag, Range, precompressed
//!   siblings and variants compressed once; misses fall through to the inner service.
//! - [`headers`]: set, append or remove request and response headers.
//! - [`request_path`]: the canonical request path every other layer decides on.
//!
//! Each follows the tower-http shape: `FooLayer` (cheap to clone, built once from
//! config) and `Foo<S>` (the service).
//!
//! Facts shared between layers travel in request extensions: [`ConnectionInfo`] (set
//! by the server for every request) and [`AuthenticatedUser`] (set by [`auth`]).

pub mod access_log;
pub mod auth;
pub mod compression;
pub mod headers;
pub mod request_path;
pub mod static_files;

use std::net::SocketAddr;

/// Facts about the connection a request arrived on, in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The local address that accepted the connection. None for a Unix socket, and when
    /// a trusted proxy named the scheme or host the client used (the client's request
    /// then arrived at the proxy, not here).
    pub local: Option<SocketAddr>,
    /// `"http"` or `"https"`.
    pub scheme: &'static str,
}

/// Which upstream servers a proxied request went to and how long the answering one
/// took to send its response head, in the response's extensions (the access log's
/// `upstream_addr` and `upstream_time` atoms, nginx's `$upstream_addr` and
/// `$upstream_header_time`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamInfo {
    /// The servers tried, in order, comma-separated (`10.0.0.5:8080, 10.0.0.6:8080`);
    /// the last one answered (or failed last).
    pub address: String,
    /// From the first attempt until the response head, or until the last failure.
    pub duration: std::time::Duration,
}

/// The W3C ids of the request's server span, in the request's extensions when traces
/// are exported (the access log can write them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceIds {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
}

/// The user an auth layer authenticated; becomes `REMOTE_USER` in the WSGI environ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedUser(pub String);

/// Where an auth layer below records the user for a layer above that asked for it (the
/// access log puts one in the request's extensions, then reads it when it writes the
/// line).
#[derive(Clone, Debug, Default)]
pub struct UserSlot(std::sync::Arc<std::sync::OnceLock<String>>);

impl UserSlot {
    /// Record the user (the first one recorded wins).
    pub fn set(&self, user: &str) {
        let _ = self.0.set(user.to_owned());
    }

    /// The user, if one was recorded.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The body type every layer here accepts and produces (axum's, so the gateway's
/// pipeline needs no conversion between layers).
pub use axum_core::body::Body;

/// The one builder of the gateway's own plain-text responses (401, 404, 413, 500 ...),
/// used by these layers, the WSGI bridge and the server alike: the body is the status
/// line, details go to the log, never to the client. Statuses that may leave request
/// bytes unread on the connection (400, 408, 413, 414, 431) also close it.
pub fn error_response(status: http::StatusCode) -> http::Response<Body> {
    use http::{header, HeaderValue, StatusCode};
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = http::Response::new(Body::from(format!("{} {reason}\n", status.as_u16())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::URI_TOO_LONG
            | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    ) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
