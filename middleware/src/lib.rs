//! Native tower layers of wsgi-gateway. No Python here: every layer works on
//! `http::Request`/`http::Response` and can be tested around a `service_fn`.
//!
//! # Layout
//! - [`access_log`]: one line per response (combined, JSON, or gunicorn atoms), written
//!   off the request path.
//! - [`compression`]: gzip, br and zstd, negotiated with q-values, flushed per chunk.
//! - [`auth`]: HTTP Basic against an htpasswd file, or Bearer tokens.
//! - [`static_files`]: files under a mount prefix, with ETag, Range and precompressed
//!   siblings; misses fall through to the inner service.
//! - [`headers`]: set, append or remove request and response headers.
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
pub mod static_files;

use std::net::SocketAddr;

/// Facts about the connection a request arrived on, in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The local address that accepted the connection.
    pub local: Option<SocketAddr>,
    /// `"http"` or `"https"`.
    pub scheme: &'static str,
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

/// The body type every layer here accepts and produces (axum's, so the gateway's
/// pipeline needs no conversion between layers).
pub use axum_core::body::Body;

/// A small plain-text response made by a layer (401, 404, 304 ...).
pub fn plain_response(status: http::StatusCode) -> http::Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = if status == http::StatusCode::NOT_MODIFIED {
        Body::empty()
    } else {
        Body::from(format!("{} {reason}\n", status.as_u16()))
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    if status != http::StatusCode::NOT_MODIFIED {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}
