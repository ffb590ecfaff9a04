//! The one place where the gateway makes its own error responses.
//!
//! Bodies are a short status line in plain text; details go to the log, never to the
//! client.

use http::{header, HeaderValue, Response, StatusCode};

/// A plain-text error response. Statuses that may leave request bytes unread on the
/// connection (400, 408, 413, 414, 431) also close it.
pub fn error_response<B: From<String>>(status: StatusCode) -> Response<B> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = Response::new(B::from(format!("{} {reason}\n", status.as_u16())));
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
