//! `[limits]`: what a request may be before it is refused.

use serde::{Deserialize, Serialize};

use super::units::ByteSize;

/// Request size limits. Defaults match gunicorn's where gunicorn has one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest request line (method, target and version) in bytes; longer gets 414
    /// (gunicorn's `limit_request_line`).
    pub max_request_line: usize,
    /// Most header fields in one request; more gets 431 (gunicorn's `limit_request_fields`).
    pub max_header_count: usize,
    /// Longest single header field (name, colon and value) in bytes; longer gets 431
    /// (gunicorn's `limit_request_field_size`).
    pub max_header_size: usize,
    /// Largest whole request head in bytes; larger gets 431.
    pub max_head_size: ByteSize,
    /// Largest request body; larger gets 413 (nginx's `client_max_body_size`).
    /// A declared Content-Length over it is refused before the app runs; a chunked body
    /// that grows past it makes `wsgi.input` raise and the response becomes 413.
    pub max_body_size: ByteSize,
    /// Accept `%2F` (an encoded slash) in request paths. Off by default: such requests
    /// get 400, since native layers (auth, static, routes) treat `a%2Fb` as one segment
    /// while the application sees `a/b` in `PATH_INFO`. Turn it on only for apps that
    /// need slashes inside a segment (Apache's `AllowEncodedSlashes`).
    pub allow_encoded_slashes: bool,
    /// Accept any RFC 9110 token as a request method. Off by default: as gunicorn does,
    /// a method with a lowercase letter or `#`, or shorter than 3 or longer than 20
    /// characters (`get`, `-bl`), gets 400. Turn it on only for an app that needs such a
    /// method (gunicorn's `permit_unconventional_http_method`).
    pub permit_unconventional_methods: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_line: 4094,
            max_header_count: 100,
            max_header_size: 8190,
            max_head_size: ByteSize(64 << 10),
            max_body_size: ByteSize(100 << 20),
            allow_encoded_slashes: false,
            permit_unconventional_methods: false,
        }
    }
}
