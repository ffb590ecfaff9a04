//! `wsgi.input`: the request body as a Python file-like object.
//!
//! Bodies up to `limits.buffer_body` arrive read in full (see [`super::buffering`]);
//! larger ones stream from hyper as the application reads them, nothing buffered beyond
//! what a `readline` needs, under `limits.min_body_rate` ([`super::body_rate`]). Reading
//! a streamed body is lazy, so hyper answers `Expect: 100-continue` only when the
//! application first reads. `read()` ends at Content-Length or at the end of a chunked
//! body (`wsgi.input_terminated` is true).
//!
//! A body that cannot be read whole makes every later read raise `OSError`, and the
//! [`BodyFault`] is recorded for the code that answers for the request: a body over
//! `limits.max_body_size` becomes 413, a malformed or cut-off body (a chunk framing error
//! found by hyper or the framing check, or the client closing mid-body) becomes 400, a
//! client too slow for `server.read_timeout` or `limits.min_body_rate` becomes 408
//! (`TimeoutError`), unless the application caught the exception and answered itself.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use pyo3::exceptions::{PyOSError, PyStopIteration, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use sync_wrapper::SyncWrapper;
use tokio::runtime::Handle;

use super::body_rate::{MinBodyRate, RateBudget};

/// Where the request body comes from.
pub enum InputSource {
    /// No body (GET, or Content-Length: 0).
    Empty,
    /// Read before the application was called: the whole body, or, with a fault, what
    /// arrived before the body turned out malformed or too large (reading past it
    /// raises, as it would have while streaming).
    Buffered {
        /// The bytes read.
        data: Bytes,
        /// Why the body ends there, if it did not end normally.
        fault: Option<BodyFault>,
    },
    /// The body streams from the connection as it is read; `read_ahead` came first.
    Streaming {
        /// Bytes read before the application was called.
        read_ahead: Bytes,
        /// The rest of the body.
        body: Body,
    },
}

/// How the input stream reads from the connection.
#[derive(Clone)]
pub struct InputLimits {
    /// Largest body the application may read.
    pub max_body_size: u64,
    /// How long one read may wait for the client.
    pub read_timeout: Duration,
    /// How fast a streamed body must arrive.
    pub min_rate: MinBodyRate,
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
    /// The client sent the body too slowly (408).
    TooSlow {
        /// Which limit it missed.
        reason: &'static str,
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
            BodyFault::TooSlow { reason } => format!("request body too slow: {reason}"),
        }
    }

    /// The Python exception reads raise: `TimeoutError` for a slow client (a subclass
    /// of `OSError`), `OSError` otherwise.
    fn to_pyerr(&self) -> PyErr {
        match self {
            BodyFault::TooSlow { .. } => PyTimeoutError::new_err(self.message()),
            _ => PyOSError::new_err(self.message()),
        }
    }
}

/// The error and its sources, one line (hyper's errors say little at the top level).
pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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
    /// Raised once the buffered bytes are read (a body that failed while buffered).
    pending_fault: Option<BodyFault>,
    runtime: Handle,
    limits: InputLimits,
    rate: RateBudget,
    received: u64,
}

impl WsgiInput {
    /// An input stream over `source`, pulling with `runtime` when it must wait.
    pub fn new(source: InputSource, runtime: Handle, limits: InputLimits) -> Self {
        let (buffer, body, pending_fault) = match source {
            InputSource::Empty => (BytesMut::new(), None, None),
            InputSource::Buffered { data, fault } => (BytesMut::from(&data[..]), None, fault),
            InputSource::Streaming { read_ahead, body } => (
                BytesMut::from(&read_ahead[..]),
                Some(SyncWrapper::new(body)),
                None,
            ),
        };
        let received = buffer.len() as u64;
        let rate = RateBudget::new(limits.min_rate);
        Self {
            buffer,
            body,
            pending_fault,
            runtime,
            limits,
            rate,
            received,
        }
    }

    /// Record `fault` (the first one wins) and raise it.
    fn failed(&mut self, fault: BodyFault) -> PyErr {
        self.body = None;
        self.limits.fault.get_or_init(|| fault).to_pyerr()
    }

    /// Pull the next piece of the body into the buffer; false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if let Some(fault) = self.limits.fault.get() {
            return Err(fault.to_pyerr());
        }
        if let Some(fault) = self.pending_fault.take() {
            return Err(self.failed(fault));
        }
        let Some(body) = self.body.as_mut() else {
            return Ok(false);
        };
        let body = body.get_mut();
        let runtime = &self.runtime;
        let read_timeout = self.limits.read_timeout;
        // The wait ends at the read timeout or when the client falls too far behind
        // the minimum rate, whichever comes first.
        let (wait, reason) = match self.rate.allowance() {
            Some(allowance) if allowance < read_timeout => {
                (allowance, "slower than limits.min_body_rate")
            }
            _ => (read_timeout, "nothing received within server.read_timeout"),
        };
        let started = Instant::now();
        let next = py
            .detach(|| runtime.block_on(async { tokio::time::timeout(wait, body.frame()).await }));
        let waited = started.elapsed();
        match next {
            Err(_elapsed) => Err(self.failed(BodyFault::TooSlow { reason })),
            Ok(None) => {
                self.body = None;
                Ok(false)
            }
            Ok(Some(Err(error))) => Err(self.failed(BodyFault::Malformed {
                reason: error_chain(&error),
            })),
            Ok(Some(Ok(frame))) => {
                let data = frame.into_data().unwrap_or_default();
                self.rate.record(data.len() as u64, waited);
                if !data.is_empty() {
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
