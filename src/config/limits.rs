//! `[limits]`: what a request may be before it is refused.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{duration, ByteSize};

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
    /// Request bodies up to this size are read whole, in memory, before the application
    /// is called, so no Python thread waits on a slow upload (nginx's request
    /// buffering). This applies to chunked bodies too; one that grows past the size
    /// streams on from what was read. The whole read must end within
    /// `server.read_timeout`, or the client gets 408 and the application is not called.
    /// A body with `Expect: 100-continue` is not read ahead (the application decides
    /// whether it wants it). 0: every body streams.
    pub buffer_body: ByteSize,
    /// Most memory the bodies being read ahead (`buffer_body`) may hold in one worker,
    /// all requests together. A body that finds it used up is not read further: it
    /// streams to the application from what was read, under `min_body_rate`, as a body
    /// over `buffer_body` does. Bounds what many slow uploaders can make a worker hold
    /// (nginx spills such bodies to temporary files). 0: every body streams.
    pub buffer_memory: ByteSize,
    /// Slowest a streamed request body (over `buffer_body`) may arrive, in bytes per
    /// second, while the application waits for it. The client may fall behind this rate
    /// by `min_body_rate_window` at most; then the read raises `TimeoutError` and the
    /// response is 408. 0: only `server.read_timeout` bounds each wait.
    pub min_body_rate: ByteSize,
    /// How far behind `min_body_rate` a client may fall (the averaging window).
    #[serde(with = "duration")]
    pub min_body_rate_window: Duration,
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
            buffer_body: ByteSize(1 << 20),
            buffer_memory: ByteSize(128 << 20),
            min_body_rate: ByteSize(1024),
            min_body_rate_window: Duration::from_secs(10),
            allow_encoded_slashes: false,
            permit_unconventional_methods: false,
        }
    }
}
