//! `start_response`, `write()` and the path a response takes back to hyper.
//!
//! The status and headers are held until the first non-empty body chunk (or the end
//! of the response), as PEP 3333 asks, so an application can still replace them by
//! calling `start_response` again with `exc_info`. Headers are checked when they are
//! given: hop-by-hop fields and CR/LF/NUL in names or values are application errors.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;

use super::body::{stream_channel, StreamSender, WsgiBody};

/// Chunks buffered between the Python thread and the connection.
const STREAM_CAPACITY: usize = 16;

/// A response head and body, as the Python thread hands it to the connection task.
pub struct WsgiResponse {
    /// Status code.
    pub status: StatusCode,
    /// Header fields, already validated.
    pub headers: HeaderMap,
    /// The body.
    pub body: WsgiBody,
}

impl WsgiResponse {
    /// A short plain-text response made by the gateway itself (errors).
    pub fn plain(status: StatusCode) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        let text = format!("{} {reason}\n", status.as_u16());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Self {
            status,
            headers,
            body: WsgiBody::Full(Some(Bytes::from(text))),
        }
    }
}

/// Why sending part of the response stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum SendStop {
    /// The client went away (or stopped reading for longer than the write timeout).
    ClientGone,
    /// Content-Length bytes have been sent; the rest of the body is discarded.
    LengthReached,
}

/// The status and headers the application gave.
pub struct PendingHead {
    /// The status code.
    pub status: StatusCode,
    /// The validated header fields.
    pub headers: HeaderMap,
    /// The application's Content-Length, if it gave one.
    pub content_length: Option<u64>,
}

/// Per-request facts the response path needs.
pub struct ResponseContext {
    /// The request method (HEAD responses carry no body).
    pub method: Method,
    /// The runtime used to wait on a full channel.
    pub runtime: Handle,
    /// How long a chunk may wait for a slow client.
    pub write_timeout: Duration,
}

/// The `start_response` callable given to the application; its `write` method is the
/// `write()` callable that `start_response` returns.
#[pyclass(module = "wsgi_gateway", name = "StartResponse")]
pub struct StartResponse {
    context: ResponseContext,
    pending: Option<PendingHead>,
    head_tx: Option<oneshot::Sender<WsgiResponse>>,
    stream: Option<StreamSender>,
    /// Body bytes still allowed by the application's Content-Length.
    remaining: Option<u64>,
    client_gone: bool,
}

impl StartResponse {
    /// A responder that delivers the response through `head_tx`.
    pub fn new(context: ResponseContext, head_tx: oneshot::Sender<WsgiResponse>) -> Self {
        Self {
            context,
            pending: None,
            head_tx: Some(head_tx),
            stream: None,
            remaining: None,
            client_gone: false,
        }
    }

    /// True once the head has gone to the client.
    pub fn headers_sent(&self) -> bool {
        self.head_tx.is_none()
    }

    /// True once `start_response` has been called.
    pub fn has_status(&self) -> bool {
        self.pending.is_some() || self.headers_sent()
    }

    fn body_allowed(&self, status: StatusCode) -> bool {
        self.context.method != Method::HEAD && status_has_body(status)
    }

    fn take_head(&mut self) -> PyResult<PendingHead> {
        self.pending.take().ok_or_else(|| {
            PyRuntimeError::new_err("the application sent a body before calling start_response()")
        })
    }

    /// Send one body chunk, sending the head first if it has not gone yet.
    pub fn send_chunk(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<Result<(), SendStop>> {
        if self.client_gone {
            return Ok(Err(SendStop::ClientGone));
        }
        if data.is_empty() {
            return Ok(Ok(()));
        }
        if !self.headers_sent() {
            let head = self.take_head()?;
            let allowed = self.body_allowed(head.status);
            self.remaining = head.content_length;
            let body = if allowed {
                let (sender, body) = stream_channel(STREAM_CAPACITY);
                self.stream = Some(sender);
                body
            } else {
                WsgiBody::empty()
            };
            if !self.deliver(head.status, head.headers, body) {
                return Ok(Err(SendStop::ClientGone));
            }
        }
        let Some(stream) = &self.stream else {
            // HEAD, 204, 304: the body is discarded.
            return Ok(Ok(()));
        };
        let (chunk, reached) = match self.remaining {
            Some(0) => return Ok(Err(SendStop::LengthReached)),
            Some(remaining) if data.len() as u64 >= remaining => {
                let cut = remaining as usize;
                if data.len() > cut {
                    tracing::warn!(
                        declared = remaining,
                        "the application sent more than its Content-Length; the excess is dropped"
                    );
                }
                self.remaining = Some(0);
                (Bytes::copy_from_slice(&data[..cut]), true)
            }
            Some(remaining) => {
                self.remaining = Some(remaining - data.len() as u64);
                (Bytes::copy_from_slice(data), false)
            }
            None => (Bytes::copy_from_slice(data), false),
        };
        let sent = match stream.chunks.try_send(chunk) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(chunk)) => {
                // Only a full channel releases the GIL, and only for write_timeout.
                let tx = stream.chunks.clone();
                let runtime = &self.context.runtime;
                let timeout = self.context.write_timeout;
                py.detach(move || {
                    runtime.block_on(async {
                        matches!(
                            tokio::time::timeout(timeout, tx.send(chunk)).await,
                            Ok(Ok(()))
                        )
                    })
                })
            }
        };
        if !sent {
            self.client_gone = true;
            self.stream = None;
            return Ok(Err(SendStop::ClientGone));
        }
        Ok(if reached {
            Err(SendStop::LengthReached)
        } else {
            Ok(())
        })
    }

    /// End the response normally. If the head has not gone yet, `body` (all chunks the
    /// application produced) becomes a body of known length.
    pub fn finish(&mut self, body: Option<Bytes>) -> PyResult<()> {
        if self.headers_sent() {
            if let Some(stream) = self.stream.take() {
                if self.remaining.is_some_and(|r| r > 0) {
                    tracing::warn!(
                        missing = self.remaining,
                        "the application sent less than its Content-Length; closing the connection"
                    );
                    // Dropped without complete(): hyper aborts the connection.
                    drop(stream);
                } else {
                    stream.complete();
                }
            }
            return Ok(());
        }
        let mut head = self.take_head()?;
        let body = body.unwrap_or_default();
        if self.context.method == Method::HEAD && status_has_body(head.status) {
            // The head GET would get: the length of the body GET would carry.
            with_length_of(&mut head.headers, &body);
            self.deliver(head.status, head.headers, WsgiBody::empty());
            return Ok(());
        }
        let body = if !self.body_allowed(head.status) {
            if head.status == StatusCode::NO_CONTENT || head.status.is_informational() {
                head.headers.remove(header::CONTENT_LENGTH);
            }
            WsgiBody::empty()
        } else {
            match head.content_length {
                Some(declared) if (body.len() as u64) > declared => {
                    tracing::warn!(
                        declared,
                        sent = body.len(),
                        "the application sent more than its Content-Length; the excess is dropped"
                    );
                    WsgiBody::Full(Some(body.slice(..declared as usize)))
                }
                Some(declared) if (body.len() as u64) < declared => {
                    tracing::warn!(
                        declared,
                        sent = body.len(),
                        "the application sent less than its Content-Length; closing the connection"
                    );
                    // The declared length stays: the client sees it was not met.
                    let (sender, stream) = stream_channel(1);
                    let _ = sender.chunks.try_send(body);
                    drop(sender);
                    stream
                }
                _ => WsgiBody::Full(Some(body).filter(|b| !b.is_empty())),
            }
        };
        self.deliver(head.status, head.headers, body);
        Ok(())
    }

    /// End the response with a body made by `make_body` from the pending head (used for
    /// file responses). `make_body` is told whether a body may be sent at all (not for
    /// HEAD, 204 and 304) so it can still set headers such as Content-Length.
    pub fn finish_with(
        &mut self,
        make_body: impl FnOnce(&mut PendingHead, bool) -> WsgiBody,
    ) -> PyResult<()> {
        let mut head = self.take_head()?;
        let allowed = self.body_allowed(head.status);
        let body = make_body(&mut head, allowed);
        let body = if allowed { body } else { WsgiBody::empty() };
        self.deliver(head.status, head.headers, body);
        Ok(())
    }

    /// Answer with a gateway-made error response if nothing was sent yet; otherwise cut
    /// the body short so the client sees the failure. Returns true if the error response
    /// was sent.
    pub fn fail(&mut self, status: StatusCode) -> bool {
        if self.headers_sent() {
            // Dropping the sender without complete() aborts the body.
            self.stream = None;
            return false;
        }
        let mut response = WsgiResponse::plain(status);
        if self.context.method == Method::HEAD {
            if let WsgiBody::Full(Some(text)) = &response.body {
                with_length_of(&mut response.headers, text);
            }
            response.body = WsgiBody::empty();
        }
        self.deliver(response.status, response.headers, response.body)
    }

    /// Send the head (with its body) to the connection; false if the client is gone.
    fn deliver(&mut self, status: StatusCode, headers: HeaderMap, body: WsgiBody) -> bool {
        let Some(head_tx) = self.head_tx.take() else {
            return false;
        };
        let delivered = head_tx
            .send(WsgiResponse {
                status,
                headers,
                body,
            })
            .is_ok();
        if !delivered {
            self.client_gone = true;
            self.stream = None;
        }
        delivered
    }
}

/// False for the statuses whose responses never have a body (204, 304), whatever the
/// method.
fn status_has_body(status: StatusCode) -> bool {
    !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

/// Give a HEAD response the Content-Length a GET of the same resource gets for `body`
/// (hyper writes it from the body for GET; a HEAD response's body is empty), unless the
/// application declared one. RFC 9110 section 9.3.2.
fn with_length_of(headers: &mut HeaderMap, body: &Bytes) {
    if !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
}

/// Hop-by-hop fields (RFC 9110 section 7.6.1) that a WSGI application must not set.
fn is_hop_by_hop(name: &HeaderName) -> bool {
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
        let header_value = HeaderValue::from_bytes(&latin1).map_err(|_| {
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

/// PEP 3333's rules for one `start_response(status, headers, exc_info)` call, shared
/// by the server's callable and the native bridge's: with `exc_info` after the head was
/// sent, re-raise it; without `exc_info`, a second call is an error; otherwise the
/// validated head.
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

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)` from PEP 3333.
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: Bound<'_, Self>,
        status: &str,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let head = {
            let this = slf.borrow();
            accept_head(
                this.headers_sent(),
                this.has_status(),
                status,
                headers,
                exc_info,
            )?
        };
        slf.borrow_mut().pending = Some(head);
        Ok(slf.getattr("write")?.unbind())
    }

    /// The `write(data)` callable: send `data` now, before any iterable output.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        if !self.has_status() {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        match self.send_chunk(py, bytes.as_bytes())? {
            Ok(()) | Err(SendStop::LengthReached) => Ok(()),
            Err(SendStop::ClientGone) => Err(pyo3::exceptions::PyConnectionAbortedError::new_err(
                "the client closed the connection",
            )),
        }
    }
}
