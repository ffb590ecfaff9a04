//! Native layers between two Python layers.
//!
//! When a native layer sits below a Python layer (`python A -> compression -> python B
//! -> app`), A wraps a [`NativeBridge`]: a WSGI callable that turns the environ back
//! into an `http::Request`, runs the native layers, and at their bottom calls B
//! *inline* through [`InlineApp`], on the same Python thread (the runtime is driven with
//! `block_on` from that thread). So:
//! - the environ dict is the same object for A and B: what A put in it (a Beaker
//!   session, a Paste registry) reaches B; only what the native layers changed
//!   (headers, `REMOTE_USER`) is rewritten;
//! - thread-locals hold across `app()`, iteration and `close()`, since B's iterable is
//!   driven from A's iteration of the bridge's response;
//! - the native layers really transform what passes: compression between A and B
//!   compresses B's response before A sees it;
//! - a native service at the bottom (a proxy, see `wsgi::serve_native`) reads the
//!   request body as A's `wsgi.input`: the bridge feeds it chunk by chunk from this
//!   thread whenever the body asks (a body polled inside `block_on`, or by a connection
//!   task, cannot read a streamed `wsgi.input`, which blocks on the runtime itself).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use gateway_middleware::{AuthenticatedUser, ConnectionInfo};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Frame;
use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use sync_wrapper::SyncWrapper;
use tokio::runtime::Handle;
use tower::{Service, ServiceExt};

use super::environ::latin1;
use super::head::{accept_head, is_hop_by_hop, HeadSlot};
use super::interpreter::format_exception;
use super::iterable::{chunk_copy, close_logged};
use crate::types::GatewayService;

thread_local! {
    /// The upstream a bridged proxy answered from, for the response of the Python job
    /// running on this thread (the bridge runs inside that job, on its thread): the
    /// access log's upstream atoms then name it, though the response the client gets
    /// is the one the Python layer above made.
    static UPSTREAM: std::cell::RefCell<Option<gateway_middleware::UpstreamInfo>> =
        const { std::cell::RefCell::new(None) };
}

/// Forget what an earlier job's bridge reported (at the start of a job).
pub(super) fn clear_reported_upstream() {
    UPSTREAM.with(|slot| slot.borrow_mut().take());
}

/// What this job's bridge reported, if anything (taken when the head is sent).
pub(super) fn take_reported_upstream() -> Option<gateway_middleware::UpstreamInfo> {
    UPSTREAM.with(|slot| slot.borrow_mut().take())
}

/// The environ of the Python layer above a bridge, carried in request extensions.
#[derive(Clone)]
struct OuterEnviron(Arc<Py<PyDict>>);

/// A WSGI callable that runs native layers and then the inner WSGI callable.
#[pyclass(module = "wsgi_gateway", name = "NativeLayers")]
pub struct NativeBridge {
    service: Mutex<GatewayService>,
    runtime: Handle,
}

impl NativeBridge {
    /// `layers` wrapped around `inner` (a WSGI callable), run on `runtime`.
    pub fn new(service: GatewayService, runtime: Handle) -> Self {
        Self {
            service: Mutex::new(service),
            runtime,
        }
    }
}

/// Rebuild the request the environ describes.
fn request_from_environ(environ: &Bound<'_, PyDict>) -> PyResult<Request<Body>> {
    let get = |key: &str| -> PyResult<String> {
        Ok(match environ.get_item(key)? {
            Some(value) => value.extract::<String>()?,
            None => String::new(),
        })
    };
    let to_bytes = |text: &str| -> Vec<u8> { text.chars().map(|c| c as u32 as u8).collect() };
    let method = Method::from_bytes(get("REQUEST_METHOD")?.as_bytes())
        .map_err(|_| PyTypeError::new_err("invalid REQUEST_METHOD"))?;
    let path = to_bytes(&format!("{}{}", get("SCRIPT_NAME")?, get("PATH_INFO")?));
    // The same spelling the server gives paths, so native layers below decide alike.
    let mut target = gateway_middleware::request_path::encode_decoded(&path);
    let query = get("QUERY_STRING")?;
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query);
    }
    let version = match get("SERVER_PROTOCOL")?.as_str() {
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/2" | "HTTP/2.0" => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::new();
    for (key, value) in environ.iter() {
        let Ok(key) = key.cast::<PyString>() else {
            continue;
        };
        let key = key.to_str()?;
        let name = match key {
            "CONTENT_TYPE" => "content-type".to_owned(),
            "CONTENT_LENGTH" => "content-length".to_owned(),
            _ => match key.strip_prefix("HTTP_") {
                Some(rest) => rest.replace('_', "-").to_ascii_lowercase(),
                None => continue,
            },
        };
        let Ok(value) = value.extract::<String>() else {
            continue;
        };
        if value.is_empty() && (key == "CONTENT_TYPE" || key == "CONTENT_LENGTH") {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name),
            HeaderValue::from_bytes(&to_bytes(&value)),
        ) {
            headers.append(name, value);
        }
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = target
        .parse()
        .map_err(|_| PyTypeError::new_err(format!("cannot rebuild a URI from {target:?}")))?;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    if let Ok(Some(user)) = environ.get_item("REMOTE_USER") {
        if let Ok(user) = user.extract::<String>() {
            request.extensions_mut().insert(AuthenticatedUser(user));
        }
    }
    Ok(request)
}

/// The connection facts the environ records, for native layers that log or check them.
fn connection_info(environ: &Bound<'_, PyDict>) -> ConnectionInfo {
    let text = |key: &str| -> Option<String> { environ.get_item(key).ok()??.extract().ok() };
    let address = |host: Option<String>, port: Option<String>| -> Option<std::net::SocketAddr> {
        let ip: std::net::IpAddr = host?.trim_matches(['[', ']']).parse().ok()?;
        Some(std::net::SocketAddr::new(ip, port?.parse().ok()?))
    };
    let scheme = match text("wsgi.url_scheme").as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    ConnectionInfo {
        peer: address(text("REMOTE_ADDR"), text("REMOTE_PORT")),
        local: address(text("SERVER_NAME"), text("SERVER_PORT")),
        scheme,
    }
}

/// The outer layer's `wsgi.input`, fed to the native layers' request body from the
/// Python thread that drives the bridge, one chunk each time the body asks for one.
///
/// The body cannot read `wsgi.input` itself: it is polled inside the bridge's
/// `block_on` (or by a connection task on the runtime, for a proxy), and reading a
/// streamed `wsgi.input` blocks on the runtime in turn. So the bridge waits on the
/// response *or* the body's demand, and reads between the two waits.
struct BodyPump {
    input: Py<PyAny>,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    demand: Arc<Demand>,
    /// A chunk read from `wsgi.input` that the body had no room for yet.
    pending: Option<Result<Bytes, std::io::Error>>,
}

/// The body's request for its next chunk (nothing is read from `wsgi.input` before a
/// layer asks: a Python app below may read it itself).
#[derive(Default)]
struct Demand {
    wanted: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

/// A request body whose chunks come from a [`BodyPump`].
struct PumpedBody {
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    demand: Arc<Demand>,
}

impl http_body::Body for PumpedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        match this.chunks.poll_recv(cx) {
            Poll::Ready(chunk) => Poll::Ready(chunk.map(|chunk| chunk.map(Frame::data))),
            Poll::Pending => {
                use std::sync::atomic::Ordering;
                if !this.demand.wanted.swap(true, Ordering::AcqRel) {
                    this.demand.notify.notify_one();
                }
                Poll::Pending
            }
        }
    }
}

/// True when the environ says the request has a body (a length above 0, or chunked).
fn has_body(environ: &Bound<'_, PyDict>) -> bool {
    let text = |key: &str| -> Option<String> { environ.get_item(key).ok()??.extract().ok() };
    let length = text("CONTENT_LENGTH").unwrap_or_default();
    let chunked = text("HTTP_TRANSFER_ENCODING").is_some_and(|te| !te.is_empty());
    chunked || length.trim().parse::<u64>().is_ok_and(|n| n > 0)
}

/// What one wait of the bridge ended with.
enum Step<T> {
    Done(T),
    /// The request body wants its next chunk.
    Wanted,
}

/// Drive `future` on `runtime` from this Python thread, feeding the request body from
/// `pump` whenever it asks (the GIL is released while waiting).
fn drive<F: std::future::Future + Send>(
    py: Python<'_>,
    runtime: &Handle,
    pump: &mut Option<BodyPump>,
    mut future: Pin<&mut F>,
) -> F::Output
where
    F::Output: Send,
{
    loop {
        let demand = pump.as_ref().map(|pump| pump.demand.clone());
        let step = py.detach(|| {
            runtime.block_on(async {
                match &demand {
                    Some(demand) => tokio::select! {
                        biased;
                        output = future.as_mut() => Step::Done(output),
                        _ = demand.notify.notified() => Step::Wanted,
                    },
                    None => Step::Done(future.as_mut().await),
                }
            })
        });
        match step {
            Step::Done(output) => return output,
            Step::Wanted => {
                let Some(feeding) = pump.as_mut() else {
                    continue;
                };
                feeding
                    .demand
                    .wanted
                    .store(false, std::sync::atomic::Ordering::Release);
                // A chunk read earlier that did not fit goes first: a stale wake-up
                // (a permit left in the Notify) may come while the body still holds
                // one, and no byte read from wsgi.input may be lost.
                let item = match feeding.pending.take() {
                    Some(item) => item,
                    None => {
                        let chunk = feeding
                            .input
                            .bind(py)
                            .call_method1("read", (65536,))
                            .and_then(|data| {
                                Ok(Bytes::copy_from_slice(data.cast::<PyBytes>()?.as_bytes()))
                            });
                        match chunk {
                            // The end of the body: dropping the sender ends it.
                            Ok(data) if data.is_empty() => {
                                *pump = None;
                                continue;
                            }
                            Ok(data) => Ok(data),
                            Err(error) => Err(std::io::Error::other(error.to_string())),
                        }
                    }
                };
                let failed = item.is_err();
                match feeding.sender.try_send(item) {
                    Ok(()) if failed => *pump = None,
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(item)) => {
                        feeding.pending = Some(item);
                    }
                    // Nobody reads the body any more.
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => *pump = None,
                }
            }
        }
    }
}

#[pymethods]
impl NativeBridge {
    fn __call__(
        &self,
        py: Python<'_>,
        environ: Bound<'_, PyDict>,
        start_response: Bound<'_, PyAny>,
    ) -> PyResult<BridgeResponse> {
        let mut request = request_from_environ(&environ)?;
        let mut pump = None;
        if has_body(&environ) {
            if let Some(input) = environ.get_item("wsgi.input")? {
                let (sender, chunks) = tokio::sync::mpsc::channel(1);
                let demand = Arc::new(Demand::default());
                *request.body_mut() = Body::new(PumpedBody {
                    chunks,
                    demand: demand.clone(),
                });
                pump = Some(BodyPump {
                    input: input.unbind(),
                    sender,
                    demand,
                    pending: None,
                });
            }
        }
        request
            .extensions_mut()
            .insert(OuterEnviron(Arc::new(environ.clone().unbind())));
        request.extensions_mut().insert(connection_info(&environ));
        let service = self
            .service
            .lock()
            .map_err(|_| PyRuntimeError::new_err("native layers poisoned"))?
            .clone();
        let mut call = std::pin::pin!(service.oneshot(request));
        let response = drive(py, &self.runtime, &mut pump, call.as_mut());
        let response = match response {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        if let Some(upstream) = parts.extensions.get::<gateway_middleware::UpstreamInfo>() {
            UPSTREAM.with(|slot| *slot.borrow_mut() = Some(upstream.clone()));
        }
        let reason = parts.status.canonical_reason().unwrap_or("Unknown");
        let status = format!("{} {reason}", parts.status.as_u16());
        let headers = PyList::empty(py);
        // Hop-by-hop fields describe the native layer's own connection (a gateway-made
        // 400 or 413 says `Connection: close`); WSGI cannot carry them (PEP 3333), and
        // the server sets its own on the way out.
        for (name, value) in parts
            .headers
            .iter()
            .filter(|(name, _)| !is_hop_by_hop(name))
        {
            headers.append((name.as_str(), latin1(py, value.as_bytes())))?;
        }
        start_response.call1((status, headers))?;
        Ok(BridgeResponse {
            body: Some(SyncWrapper::new(body)),
            runtime: self.runtime.clone(),
            pump,
        })
    }
}

/// The iterable the bridge returns to the Python layer above it.
#[pyclass(module = "wsgi_gateway", name = "NativeLayersResponse")]
pub struct BridgeResponse {
    body: Option<SyncWrapper<Body>>,
    runtime: Handle,
    /// The rest of the request body, for a response that starts before it ends.
    pump: Option<BodyPump>,
}

#[pymethods]
impl BridgeResponse {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        loop {
            let Some(body) = self.body.as_mut().map(SyncWrapper::get_mut) else {
                return Err(PyStopIteration::new_err(()));
            };
            let mut next = std::pin::pin!(http_body_util::BodyExt::frame(body));
            let frame = drive(py, &self.runtime, &mut self.pump, next.as_mut());
            match frame {
                None => {
                    self.body = None;
                    return Err(PyStopIteration::new_err(()));
                }
                Some(Err(error)) => {
                    self.body = None;
                    return Err(PyRuntimeError::new_err(format!(
                        "response body failed: {error}"
                    )));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(PyBytes::new(py, &data));
                        }
                    }
                }
            }
        }
    }

    /// Drop the native body; the inner iterable is closed with it.
    fn close(&mut self) {
        self.body = None;
        self.pump = None;
    }
}

/// The bottom of a bridge: calls the inner WSGI callable on the current thread.
#[derive(Clone)]
pub struct InlineApp {
    app: Arc<Py<PyAny>>,
}

impl InlineApp {
    /// Call `app` inline for each request.
    pub fn new(app: Py<PyAny>) -> Self {
        Self { app: Arc::new(app) }
    }
}

impl Service<Request<Body>> for InlineApp {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let response = Python::attach(|py| match call_inline(py, &self.app, &request) {
            Ok(response) => response,
            Err(error) => {
                tracing::error!(
                    target: "wsgi_gateway::app",
                    request = %format!("{} {}", request.method(), request.uri()),
                    "application error:\n{}",
                    format_exception(py, &error)
                );
                crate::types::error_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        });
        std::future::ready(Ok(response))
    }
}

/// Bring the shared environ up to date with what the native layers did to the request.
fn rewrite_environ(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    request: &Request<Body>,
) -> PyResult<()> {
    let stale: Vec<Bound<'_, PyAny>> = environ
        .keys()
        .iter()
        .filter(|k| {
            k.cast::<PyString>()
                .ok()
                .and_then(|k| {
                    k.to_str().ok().map(|k| {
                        k.starts_with("HTTP_") || k == "CONTENT_TYPE" || k == "CONTENT_LENGTH"
                    })
                })
                .unwrap_or(false)
        })
        .collect();
    for key in stale {
        environ.del_item(key)?;
    }
    for name in request.headers().keys() {
        if name.as_str().contains('_') {
            continue;
        }
        let key = match name.as_str() {
            "content-type" => "CONTENT_TYPE".to_owned(),
            "content-length" => "CONTENT_LENGTH".to_owned(),
            other => format!("HTTP_{}", other.replace('-', "_").to_ascii_uppercase()),
        };
        let separator: &[u8] = if name == http::header::COOKIE {
            b"; "
        } else {
            b","
        };
        let joined = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect::<Vec<_>>()
            .join(separator);
        environ.set_item(key, latin1(py, &joined))?;
    }
    if let Some(user) = request.extensions().get::<AuthenticatedUser>() {
        environ.set_item("REMOTE_USER", user.0.as_str())?;
    }
    Ok(())
}

fn call_inline(
    py: Python<'_>,
    app: &Py<PyAny>,
    request: &Request<Body>,
) -> PyResult<Response<Body>> {
    let environ = match request.extensions().get::<OuterEnviron>() {
        Some(outer) => outer.0.bind(py).clone(),
        None => return Err(PyRuntimeError::new_err("a native bridge lost the environ")),
    };
    rewrite_environ(py, &environ, request)?;
    let capture = Bound::new(py, CaptureStartResponse::default())?;
    let iterable = app.bind(py).call1((&environ, &capture))?;
    let iterator = match iterable.try_iter() {
        Ok(iterator) => iterator,
        Err(error) => {
            close_logged(&iterable);
            return Err(error);
        }
    };
    // The head may come lazily, from inside the first iteration.
    let mut first = VecDeque::new();
    let mut exhausted = false;
    while !capture.get().lock(py).head.has_status() {
        match iterator.clone().next() {
            Some(Ok(chunk)) => match chunk_copy(&chunk) {
                Ok(chunk) => first.push_back(chunk),
                Err(error) => {
                    close_logged(&iterable);
                    return Err(error);
                }
            },
            Some(Err(error)) => {
                close_logged(&iterable);
                return Err(error);
            }
            None => {
                exhausted = true;
                break;
            }
        }
    }
    let (head, written) = {
        let mut state = capture.get().lock(py);
        (state.head.take(), std::mem::take(&mut state.written))
    };
    let head = match head {
        Ok(head) => head,
        Err(_) => {
            close_logged(&iterable);
            return Err(PyRuntimeError::new_err(
                "the application returned without calling start_response()",
            ));
        }
    };
    let mut chunks: VecDeque<Bytes> = written;
    chunks.extend(first);
    let body = InlineBody {
        chunks,
        capture: capture.unbind(),
        iterator: (!exhausted).then(|| iterator.into_any().unbind()),
        iterable: Some(iterable.unbind()),
        yielded: false,
    };
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    Ok(response)
}

/// `start_response` for an inline call: records the head and `write()` output (which
/// may come from any thread).
#[pyclass(module = "wsgi_gateway", name = "InlineStartResponse", frozen)]
#[derive(Default)]
struct CaptureStartResponse {
    state: Mutex<Captured>,
}

#[derive(Default)]
struct Captured {
    head: HeadSlot,
    /// `write()` output not yet taken by the body.
    written: VecDeque<Bytes>,
}

impl CaptureStartResponse {
    fn lock(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, Captured> {
        use pyo3::sync::MutexExt;
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl CaptureStartResponse {
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

    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = chunk_copy(data)?;
        self.lock(py).written.push_back(bytes);
        Ok(())
    }
}

/// The inner application's response, iterated on demand on the driving thread.
struct InlineBody {
    chunks: VecDeque<Bytes>,
    capture: Py<CaptureStartResponse>,
    iterator: Option<Py<PyAny>>,
    iterable: Option<Py<PyAny>>,
    /// A chunk went out since the application was last called. Calling it again may
    /// wait (on a database, a sleep), so the body first returns `Pending` once: the
    /// layers above flush what they hold (compression flushes only then).
    yielded: bool,
}

impl http_body::Body for InlineBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.chunks.pop_front() {
                if chunk.is_empty() {
                    continue;
                }
                this.yielded = true;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            let Some(iterator) = &this.iterator else {
                return Poll::Ready(None);
            };
            if std::mem::take(&mut this.yielded) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let next = Python::attach(|py| -> PyResult<Option<Vec<Bytes>>> {
                let item = iterator.bind(py).call_method0("__next__");
                let mut out: Vec<Bytes> = this.capture.get().lock(py).written.drain(..).collect();
                match item {
                    Ok(item) => {
                        out.push(chunk_copy(&item)?);
                        Ok(Some(out))
                    }
                    Err(error) if error.is_instance_of::<PyStopIteration>(py) => {
                        Ok(if out.is_empty() { None } else { Some(out) })
                    }
                    Err(error) => {
                        tracing::error!(target: "wsgi_gateway::app", "application error:\n{}", format_exception(py, &error));
                        Err(error)
                    }
                }
            });
            match next {
                Ok(Some(chunks)) => this.chunks.extend(chunks),
                Ok(None) => {
                    this.iterator = None;
                    return Poll::Ready(None);
                }
                Err(error) => {
                    this.iterator = None;
                    return Poll::Ready(Some(Err(std::io::Error::other(error.to_string()))));
                }
            }
        }
    }
}

impl Drop for InlineBody {
    fn drop(&mut self) {
        if let Some(iterable) = self.iterable.take() {
            Python::attach(|py| close_logged(iterable.bind(py)));
        }
    }
}
