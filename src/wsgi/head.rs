//! The response head an application gives `start_response`: validation, and PEP 3333's
//! rules for calling `start_response` again. Shared by the server's `start_response`
//! ([`super::response`]) and the native bridge's ([`super::bridge`]).
//!
//! Headers are checked when they are given: hop-by-hop fields and CR/LF/NUL in names
//! or values are application errors.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The status and headers the application gave.
pub struct PendingHead {
    /// The status code.
    pub status: StatusCode,
    /// The validated header fields.
    pub headers: HeaderMap,
    /// The application's Content-Length, if it gave one.
    pub content_length: Option<u64>,
}

/// What `start_response` has been given for one response, and whether the head has
/// gone out (after which only a call with `exc_info` is allowed, and it re-raises).
#[derive(Default)]
pub(crate) struct HeadSlot {
    pending: Option<PendingHead>,
    sent: bool,
}

impl HeadSlot {
    /// True once `start_response` has been called.
    pub(crate) fn has_status(&self) -> bool {
        self.pending.is_some() || self.sent
    }

    /// True once the head has gone out.
    pub(crate) fn sent(&self) -> bool {
        self.sent
    }

    /// What [`accept_head`] needs to know: (head sent, `start_response` called).
    pub(crate) fn calls_so_far(&self) -> (bool, bool) {
        (self.sent, self.has_status())
    }

    /// Keep the head of an accepted `start_response` call (replacing one given before,
    /// when the call came with `exc_info`).
    pub(crate) fn accept(&mut self, head: PendingHead) {
        self.pending = Some(head);
    }

    /// Record that a head (the application's or the gateway's own) has gone out.
    pub(crate) fn mark_sent(&mut self) {
        self.sent = true;
    }

    /// Take the application's head to send it.
    pub(crate) fn take(&mut self) -> PyResult<PendingHead> {
        let head = self.pending.take().ok_or_else(|| {
            PyRuntimeError::new_err("the application sent a body before calling start_response()")
        })?;
        self.sent = true;
        Ok(head)
    }
}

/// Hop-by-hop fields (RFC 9110 section 7.6.1) that a WSGI application must not set.
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Parse `"200 OK"`: three digits, a space, and a reason without control characters.
fn parse_status(status: &str) -> PyResult<StatusCode> {
    let bad = || {
        PyValueError::new_err(format!(
            "invalid status {status:?}: expected e.g. \"200 OK\""
        ))
    };
    let bytes = status.as_bytes();
    if bytes.len() < 4 || bytes[3] != b' ' || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(bad());
    }
    let code = StatusCode::from_bytes(&bytes[..3]).map_err(|_| bad())?;
    if code.as_u16() < 200 {
        return Err(PyValueError::new_err(format!(
            "status {status:?}: a WSGI application cannot send an informational (1xx) response"
        )));
    }
    Ok(code)
}

/// Turn the application's header list into a `HeaderMap`, refusing anything that would
/// corrupt the framing of the response.
fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<(HeaderMap, Option<u64>)> {
    let mut map = HeaderMap::new();
    let mut content_length = None;
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("response headers must be (name, value) tuples"))?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "response headers must be (name, value) tuples",
            ));
        }
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let name: &str = name
            .extract()
            .map_err(|_| PyTypeError::new_err("a header name must be a str"))?;
        let value: &str = value.extract().map_err(|_| {
            PyTypeError::new_err(format!("header {name:?}: its value must be a str"))
        })?;
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PyValueError::new_err(format!("invalid header name {name:?}")))?;
        if is_hop_by_hop(&header_name) {
            return Err(PyValueError::new_err(format!(
                "hop-by-hop header {name:?} is not allowed from a WSGI application (PEP 3333)"
            )));
        }
        let latin1: Vec<u8> = value
            .chars()
            .map(|c| u8::try_from(u32::from(c)))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                PyValueError::new_err(format!("header {name:?}: value is not latin-1: {value:?}"))
            })?;
        if latin1.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(PyValueError::new_err(format!(
                "header {name:?}: CR, LF or NUL in the value {value:?}"
            )));
        }
        // Sent without surrounding whitespace (RFC 9110 section 5.5): some middleware,
        // Beaker's session cookie for one, returns " name=value".
        let header_value = HeaderValue::from_bytes(trim_ows(&latin1)).map_err(|_| {
            PyValueError::new_err(format!("header {name:?}: invalid value {value:?}"))
        })?;
        if header_name == header::CONTENT_LENGTH {
            let length = value
                .trim()
                .parse::<u64>()
                .map_err(|_| PyValueError::new_err(format!("invalid Content-Length {value:?}")))?;
            if content_length.is_some_and(|previous| previous != length) {
                return Err(PyValueError::new_err("conflicting Content-Length headers"));
            }
            content_length = Some(length);
            map.insert(header_name, header_value);
            continue;
        }
        map.append(header_name, header_value);
    }
    Ok((map, content_length))
}

/// PEP 3333's rules for one `start_response(status, headers, exc_info)` call, given
/// [`HeadSlot::calls_so_far`]: with `exc_info` after the head was sent, re-raise it;
/// without `exc_info`, a second call is an error; otherwise the validated head.
///
/// Callers read the slot, call this without holding their lock (reading the headers
/// runs Python code), then [`HeadSlot::accept`] the result.
pub(crate) fn accept_head(
    head_sent: bool,
    head_given: bool,
    status: &str,
    headers: &Bound<'_, PyAny>,
    exc_info: Option<&Bound<'_, PyAny>>,
) -> PyResult<PendingHead> {
    match exc_info.filter(|e| !e.is_none()) {
        Some(exc_info) if head_sent => {
            // Too late to change the response: re-raise the original error.
            let value = exc_info.get_item(1)?;
            let traceback = exc_info.get_item(2)?;
            return Err(PyErr::from_value(
                value.call_method1("with_traceback", (traceback,))?,
            ));
        }
        None if head_given || head_sent => {
            return Err(PyRuntimeError::new_err(
                "start_response() called a second time without exc_info",
            ));
        }
        _ => {}
    }
    let status = parse_status(status)?;
    let (headers, content_length) = parse_headers(headers)?;
    Ok(PendingHead {
        status,
        headers,
        content_length,
    })
}

/// `value` without leading and trailing spaces and tabs.
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |e| e + 1);
    &value[start..end]
}
