//! `wsgi.input`: the request body as a Python file-like object.
//!
//! The body streams from hyper as the application reads it; nothing is buffered beyond
//! what a `readline` needs. Reading is lazy, so hyper answers `Expect: 100-continue` only
//! when the application first reads. `read()` ends at Content-Length or at the end of a
//! chunked body (`wsgi.input_terminated` is true). Small bodies may arrive pre-read.
//!
//! A body that cannot be read whole makes every later read raise `OSError`, and the
//! [`BodyFault`] is recorded for the code that answers for the request: a body over
//! `limits.max_body_size` becomes 413, a malformed or cut-off body (a chunk framing error
//! found by hyper or the framing check, or the client closing mid-body) becomes 400,
//! unless the application caught the exception and answered itself.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use pyo3::exceptions::{PyOSError, PyStopIteration, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use sync_wrapper::SyncWrapper;
use tokio::runtime::Handle;

/// Where the request body comes from.
pub enum InputSource {
    /// No body (GET, or Content-Length: 0).
    Empty,
    /// The whole body, read before the application was called.
    Buffered(Bytes),
    /// The body streams from the connection as it is read.
    Streaming(Body),
}

/// How the input stream reads from the connection.
#[derive(Clone)]
pub struct InputLimits {
    /// Largest body the application may read.
    pub max_body_size: u64,
    /// How long one read may wait for the client.
    pub read_timeout: Duration,
    /// Set when the body could not be read: the response becomes 413 or 400.
    pub fault: Arc<OnceLock<BodyFault>>,
}

/// Why the request body could not be read; the client's fault, not the application's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFault {
    /// The body grew past `limits.max_body_size` (413).
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body's framing is malformed or the body ended early (400).
    Malformed {
        /// What the body decoder said.
        reason: String,
    },
}

impl BodyFault {
    /// The message of the `OSError` that `wsgi.input` raises.
    fn message(&self) -> String {
        match self {
            BodyFault::TooLarge { limit } => {
                format!("request body is larger than limits.max_body_size ({limit} bytes)")
            }
            BodyFault::Malformed { reason } => format!("malformed request body: {reason}"),
        }
    }
}

/// The error and its sources, one line (hyper's errors say little at the top level).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The object behind `environ["wsgi.input"]`.
#[pyclass(module = "wsgi_gateway", name = "Input")]
pub struct WsgiInput {
    buffer: BytesMut,
    body: Option<SyncWrapper<Body>>,
    runtime: Handle,
    limits: InputLimits,
    received: u64,
}

impl WsgiInput {
    /// An input stream over `source`, pulling with `runtime` when it must wait.
    pub fn new(source: InputSource, runtime: Handle, limits: InputLimits) -> Self {
        let (buffer, body) = match source {
            InputSource::Empty => (BytesMut::new(), None),
            InputSource::Buffered(bytes) => (BytesMut::from(&bytes[..]), None),
            InputSource::Streaming(body) => (BytesMut::new(), Some(SyncWrapper::new(body))),
        };
        let received = buffer.len() as u64;
        Self {
            buffer,
            body,
            runtime,
            limits,
            received,
        }
    }

    /// Record `fault` (the first one wins) and raise it.
    fn failed(&mut self, fault: BodyFault) -> PyErr {
        self.body = None;
        let fault = self.limits.fault.get_or_init(|| fault);
        PyOSError::new_err(fault.message())
    }

    /// Pull the next piece of the body into the buffer; false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if let Some(fault) = self.limits.fault.get() {
            return Err(PyOSError::new_err(fault.message()));
        }
        let Some(body) = self.body.as_mut() else {
            return Ok(false);
        };
        let body = body.get_mut();
        let runtime = &self.runtime;
        let timeout = self.limits.read_timeout;
        let next = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(timeout, body.frame()).await })
        });
        match next {
            Err(_elapsed) => Err(PyTimeoutError::new_err(
                "timed out waiting for the request body from the client",
            )),
            Ok(None) => {
                self.body = None;
                Ok(false)
            }
            Ok(Some(Err(error))) => Err(self.failed(BodyFault::Malformed {
                reason: error_chain(&error),
            })),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.received += data.len() as u64;
                    if self.received > self.limits.max_body_size {
                        let limit = self.limits.max_body_size;
                        return Err(self.failed(BodyFault::TooLarge { limit }));
                    }
                    self.buffer.extend_from_slice(&data);
                }
                Ok(true)
            }
        }
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.buffer.len());
        let bytes = PyBytes::new(py, &self.buffer[..n]);
        self.buffer.advance(n);
        bytes
    }

    /// One line (with its `\n`), at most `limit` bytes when a limit is given.
    fn line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut scanned = 0;
        loop {
            if let Some(at) = memchr(b'\n', &self.buffer[scanned..]) {
                let end = scanned + at + 1;
                return Ok(self.take(py, limit.map_or(end, |l| l.min(end))));
            }
            if let Some(limit) = limit {
                if self.buffer.len() >= limit {
                    return Ok(self.take(py, limit));
                }
            }
            scanned = self.buffer.len();
            if !self.fill(py)? {
                let all = self.buffer.len();
                return Ok(self.take(py, all));
            }
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// `None` or a negative number mean "no limit", as in `io.RawIOBase`.
fn as_limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    /// Read `size` bytes (fewer only at the end of the body), or everything when `size`
    /// is omitted, None or negative.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        match as_limit(size) {
            Some(size) => {
                while self.buffer.len() < size && self.fill(py)? {}
                Ok(self.take(py, size))
            }
            None => {
                while self.fill(py)? {}
                let all = self.buffer.len();
                Ok(self.take(py, all))
            }
        }
    }

    /// Read one line including its `\n`; with `size`, at most that many bytes.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.line(py, as_limit(size))
    }

    /// Read lines until the end, or until about `hint` bytes have been read.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = as_limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.line(py, None)?;
            let len = line.as_bytes().len();
            if len == 0 {
                break;
            }
            lines.append(line)?;
            total += len;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.line(py, None)?;
        if line.as_bytes().is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(line)
    }

    /// Always true: the stream can be read.
    fn readable(&self) -> bool {
        true
    }

    /// Does nothing; the stream is closed by the gateway after the response.
    fn close(&self) {}
}
