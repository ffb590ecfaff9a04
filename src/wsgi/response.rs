//! `start_response`, `write()` and the path a response takes back to hyper.
//!
//! The status and headers are held until the first non-empty body chunk (or the end
//! of the response), as PEP 3333 asks, so an application can still replace them by
//! calling `start_response` again with `exc_info` (the rules are in `wsgi/head.rs`:
//! hop-by-hop fields and CR/LF/NUL are application errors; values are sent without
//! surrounding whitespace).
//!
//! `start_response` and `write()` may be called from any Python thread: a producer
//! thread may `write()` while the request's thread iterates the response. The state
//! sits behind one mutex, taken without the GIL when it is contended, so a `write()`
//! that waits for a slow client holds up the other writers, in order, and nothing
//! else.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use pyo3::exceptions::{PyConnectionAbortedError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::PyBytes;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::body::{stream_channel, SendError, StreamSender, WsgiBody};
pub use super::head::PendingHead;
use super::head::{accept_head, HeadSlot};

/// Bytes buffered between the Python thread and the connection.
const STREAM_CAPACITY: usize = 256 << 10;

/// A response head and body, as the Python thread hands it to the connection task.
pub struct WsgiResponse {
    /// Status code.
    pub status: StatusCode,
    /// Header fields, already validated.
    pub headers: HeaderMap,
    /// The body.
    pub body: WsgiBody,
    /// The upstream a proxy below a Python layer answered from (through the bridge).
    pub upstream: Option<gateway_middleware::UpstreamInfo>,
}

impl WsgiResponse {
    /// A short plain-text response made by the gateway itself (errors), with the head
    /// of every other gateway-made error (`error_response`: a 400 or 413 also closes
    /// the connection).
    pub fn plain(status: StatusCode) -> Self {
        let (head, _) = crate::types::error_response(status).into_parts();
        let reason = status.canonical_reason().unwrap_or("Error");
        let text = format!("{} {reason}\n", status.as_u16());
        Self {
            status,
            headers: head.headers,
            body: WsgiBody::Full(Some(Bytes::from(text))),
            upstream: None,
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
#[pyclass(module = "wsgi_gateway", name = "StartResponse", frozen)]
pub struct StartResponse {
    context: ResponseContext,
    state: Mutex<ResponseState>,
}

/// Where one response stands.
struct ResponseState {
    head: HeadSlot,
    /// Where the head goes; taken when it is sent.
    head_tx: Option<oneshot::Sender<WsgiResponse>>,
    stream: Option<StreamSender>,
    /// Body bytes still allowed by the application's Content-Length.
    remaining: Option<u64>,
    client_gone: bool,
    /// The response has ended (normally or not): a later `write()` is an error.
    ended: bool,
}

impl StartResponse {
    /// A responder that delivers the response through `head_tx`.
    pub fn new(context: ResponseContext, head_tx: oneshot::Sender<WsgiResponse>) -> Self {
        Self {
            context,
            state: Mutex::new(ResponseState {
                head: HeadSlot::default(),
                head_tx: Some(head_tx),
                stream: None,
                remaining: None,
                client_gone: false,
                ended: false,
            }),
        }
    }

    /// The state, waited for without the GIL if another thread holds it (that thread
    /// may need the GIL to finish).
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, ResponseState> {
        // Every method leaves the state consistent before it can panic, so a poisoned
        // lock is still good.
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }

    /// True once the head has gone to the client.
    pub fn headers_sent(&self, py: Python<'_>) -> bool {
        self.lock(py).head.sent()
    }

    fn body_allowed(&self, status: StatusCode) -> bool {
        self.context.method != Method::HEAD && status_has_body(status)
    }

    /// Send one body chunk, sending the head first if it has not gone yet.
    pub fn send_chunk(&self, py: Python<'_>, data: &[u8]) -> PyResult<Result<(), SendStop>> {
        let mut state = self.lock(py);
        if state.ended {
            return Err(PyRuntimeError::new_err(
                "write() called after the response ended",
            ));
        }
        if state.client_gone {
            return Ok(Err(SendStop::ClientGone));
        }
        if data.is_empty() {
            return Ok(Ok(()));
        }
        if !state.head.sent() {
            let head = state.head.take()?;
            let allowed = self.body_allowed(head.status);
            state.remaining = head.content_length;
            let body = if allowed {
                let (sender, body) = stream_channel(STREAM_CAPACITY);
                state.stream = Some(sender);
                body
            } else {
                WsgiBody::empty()
            };
            if !state.deliver(head.status, head.headers, body) {
                return Ok(Err(SendStop::ClientGone));
            }
        }
        let (chunk, reached) = match state.remaining {
            None => (data, false),
            Some(0) => return Ok(Err(SendStop::LengthReached)),
            Some(remaining) if data.len() as u64 >= remaining => {
                let cut = remaining as usize;
                if data.len() > cut {
                    tracing::warn!(
                        declared = remaining,
                        "the application sent more than its Content-Length; the excess is dropped"
                    );
                }
                state.remaining = Some(0);
                (&data[..cut], true)
            }
            Some(remaining) => {
                state.remaining = Some(remaining - data.len() as u64);
                (data, false)
            }
        };
        let Some(stream) = &state.stream else {
            // HEAD, 204, 304: the body is discarded.
            return Ok(Ok(()));
        };
        let sent = match stream.try_send(chunk) {
            Ok(()) => true,
            Err(SendError::Closed) => false,
            Err(SendError::Full) => {
                // Only a full queue releases the GIL, and only for write_timeout. Other
                // writers wait for the state lock meanwhile, without the GIL.
                let chunk = Bytes::copy_from_slice(chunk);
                let runtime = &self.context.runtime;
                let timeout = self.context.write_timeout;
                py.detach(|| {
                    runtime.block_on(async {
                        matches!(
                            tokio::time::timeout(timeout, stream.send(chunk)).await,
                            Ok(Ok(()))
                        )
                    })
                })
            }
        };
        if !sent {
            state.client_gone = true;
            state.stream = None;
            return Ok(Err(SendStop::ClientGone));
        }
        Ok(if reached {
            Err(SendStop::LengthReached)
        } else {
            Ok(())
        })
    }

    /// End the response normally. `body` is the rest of the body (everything, when
    /// the head has not gone yet: it becomes a body of known length).
    pub fn finish(&self, py: Python<'_>, body: Option<Bytes>) -> PyResult<()> {
        let mut state = self.lock(py);
        if state.head.sent() {
            if let Some(body) = body.filter(|b| !b.is_empty()) {
                // Another thread's write() sent the head in the meantime. A stop (the
                // client gone, the length reached) ends the response below all the same.
                drop(state);
                let _stopped = self.send_chunk(py, &body)?;
                state = self.lock(py);
            }
            state.ended = true;
            if let Some(stream) = state.stream.take() {
                if state.remaining.is_some_and(|r| r > 0) {
                    tracing::warn!(
                        missing = state.remaining,
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
        let mut head = state.head.take()?;
        state.ended = true;
        let body = body.unwrap_or_default();
        if self.context.method == Method::HEAD && status_has_body(head.status) {
            // The head GET would get: the length of the body GET would carry.
            with_length_of(&mut head.headers, &body);
            state.deliver(head.status, head.headers, WsgiBody::empty());
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
                    let (sender, stream) = stream_channel(body.len().max(1));
                    let _ = sender.try_send(&body);
                    drop(sender);
                    stream
                }
                _ => WsgiBody::Full(Some(body).filter(|b| !b.is_empty())),
            }
        };
        state.deliver(head.status, head.headers, body);
        Ok(())
    }

    /// End the response with a body made by `make_body` from the pending head (used for
    /// file responses). `make_body` is told whether a body may be sent at all (not for
    /// HEAD, 204 and 304) so it can still set headers such as Content-Length.
    pub fn finish_with(
        &self,
        py: Python<'_>,
        make_body: impl FnOnce(&mut PendingHead, bool) -> WsgiBody,
    ) -> PyResult<()> {
        let mut state = self.lock(py);
        let mut head = state.head.take()?;
        state.ended = true;
        let allowed = self.body_allowed(head.status);
        let body = make_body(&mut head, allowed);
        let body = if allowed { body } else { WsgiBody::empty() };
        state.deliver(head.status, head.headers, body);
        Ok(())
    }

    /// Answer with a gateway-made error response if nothing was sent yet; otherwise cut
    /// the body short so the client sees the failure. Either way the response has
    /// ended. Returns true if the error response was sent.
    pub fn fail(&self, py: Python<'_>, status: StatusCode) -> bool {
        let mut state = self.lock(py);
        state.ended = true;
        if state.head.sent() {
            // Dropping the sender without complete() aborts the body.
            state.stream = None;
            return false;
        }
        let mut response = WsgiResponse::plain(status);
        if self.context.method == Method::HEAD {
            if let WsgiBody::Full(Some(text)) = &response.body {
                with_length_of(&mut response.headers, text);
            }
            response.body = WsgiBody::empty();
        }
        state.deliver(response.status, response.headers, response.body)
    }

    /// End the response with a 500 unless it has ended already: for paths that leave
    /// without finishing (a panic on the way).
    pub fn fail_unless_ended(&self, py: Python<'_>) {
        if !self.lock(py).ended {
            self.fail(py, StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}

impl ResponseState {
    /// Send the head (with its body) to the connection; false if the client is gone.
    fn deliver(&mut self, status: StatusCode, headers: HeaderMap, body: WsgiBody) -> bool {
        self.head.mark_sent();
        let Some(head_tx) = self.head_tx.take() else {
            return false;
        };
        let delivered = head_tx
            .send(WsgiResponse {
                status,
                headers,
                body,
                upstream: super::bridge::take_reported_upstream(),
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

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)` from PEP 3333.
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &str,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let (sent, given) = this.lock(py).head.calls_so_far();
        let head = accept_head(sent, given, status, headers, exc_info)?;
        this.lock(py).head.accept(head);
        Ok(slf.getattr("write")?.unbind())
    }

    /// The `write(data)` callable: send `data` now, before any iterable output. Safe
    /// from any thread.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        if !self.lock(py).head.has_status() {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        match self.send_chunk(py, bytes.as_bytes())? {
            Ok(()) | Err(SendStop::LengthReached) => Ok(()),
            Err(SendStop::ClientGone) => Err(PyConnectionAbortedError::new_err(
                "the client closed the connection",
            )),
        }
    }
}
