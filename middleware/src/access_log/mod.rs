//! One line per response, written off the request path.
//!
//! The line is written when the response body ends (or is abandoned), so it carries the
//! bytes actually sent and the whole latency, as gunicorn's does. Text a client or an
//! application controls (request line, User-Agent, Referer, user, headers) is escaped
//! as nginx does (`"` becomes `\x22`), so no client can forge a field; JSON lines are
//! serialized by serde_json and stay valid JSON (bytes that are not UTF-8 become U+FFFD).
//!
//! ```no_run
//! use gateway_middleware::access_log::{AccessLogLayer, LogFormat, Output};
//! let layer = AccessLogLayer::new(LogFormat::parse("combined").unwrap(), &Output::Stdout).unwrap();
//! # let _ = layer;
//! ```

mod escape;
mod format;
mod sink;

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Frame, SizeHint};
use tower::{Layer, Service};

pub use format::{Atom, FormatError, LogFormat};
pub use sink::{LogSink, Output};

use crate::request_path::OriginalTarget;
use crate::{AuthenticatedUser, Body, ConnectionInfo, TraceIds, UpstreamInfo, UserSlot};

/// Writes an access log line for every response.
#[derive(Clone, Debug)]
pub struct AccessLogLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    format: LogFormat,
    atoms: Vec<Atom>,
    sink: LogSink,
    request_headers: Vec<header::HeaderName>,
}

impl AccessLogLayer {
    /// Log in `format` to `output` (opened now; its writer thread starts now).
    pub fn new(format: LogFormat, output: &Output) -> std::io::Result<Self> {
        let sink = LogSink::start(output)?;
        let atoms = format.atoms();
        let request_headers = atoms
            .iter()
            .filter_map(|atom| match atom {
                Atom::RequestHeader(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                format,
                atoms,
                sink,
                request_headers,
            }),
        })
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`AccessLogLayer`].
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What is known of the request when it arrives.
struct RequestFacts {
    started: Instant,
    time: chrono::DateTime<chrono::Local>,
    method: Method,
    uri: Uri,
    version: Version,
    peer: Option<std::net::SocketAddr>,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    request_id: String,
    trace: Option<TraceIds>,
    wanted_headers: Vec<Option<HeaderValue>>,
}

/// A request id: the client's `X-Request-Id`, or a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        return id.to_owned();
    }
    let seed = std::process::id() as u64;
    format!("{seed:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl<S> Service<Request<Body>> for AccessLog<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // An auth layer below records the user here.
        let user = UserSlot::default();
        request.extensions_mut().insert(user.clone());
        let headers = request.headers();
        let facts = RequestFacts {
            started: Instant::now(),
            time: chrono::Local::now(),
            method: request.method().clone(),
            // The target as the client sent it, as nginx's `$request` shows it.
            uri: match request.extensions().get::<OriginalTarget>() {
                Some(original) => original
                    .0
                    .as_str()
                    .parse()
                    .unwrap_or_else(|_| request.uri().clone()),
                None => request.uri().clone(),
            },
            version: request.version(),
            peer: request
                .extensions()
                .get::<ConnectionInfo>()
                .and_then(|c| c.peer),
            referer: headers.get(header::REFERER).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            request_id: request_id(headers),
            trace: request.extensions().get::<TraceIds>().cloned(),
            wanted_headers: self
                .shared
                .request_headers
                .iter()
                .map(|name| headers.get(name).cloned())
                .collect(),
        };
        ResponseFuture {
            inner: self.inner.call(request),
            line: Some((self.shared.clone(), facts, user)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AccessLog`]: once the head is ready, the body is wrapped
    /// so the line is written when it ends.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        line: Option<(Arc<Shared>, RequestFacts, UserSlot)>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = futures_util::ready!(this.inner.poll(cx))?;
        let (shared, facts, user) = this.line.take().expect("polled after completion");
        let (parts, body) = response.into_parts();
        let pending = PendingLine {
            shared,
            facts,
            status: parts.status,
            headers: parts.headers.clone(),
            user: parts
                .extensions
                .get::<AuthenticatedUser>()
                .map(|u| u.0.clone())
                .or_else(|| user.get().map(str::to_owned)),
            bytes: 0,
            upstream: parts.extensions.get::<UpstreamInfo>().cloned(),
        };
        Poll::Ready(Ok(Response::from_parts(
            parts,
            Body::new(LoggedBody {
                inner: body,
                pending: Some(pending),
            }),
        )))
    }
}

/// Everything needed to write the line once the body is done.
struct PendingLine {
    shared: Arc<Shared>,
    facts: RequestFacts,
    status: http::StatusCode,
    headers: HeaderMap,
    user: Option<String>,
    bytes: u64,
    upstream: Option<UpstreamInfo>,
}

impl PendingLine {
    fn write(self) {
        let line = match self.shared.format {
            LogFormat::Json => self.json(),
            _ => self.atoms(),
        };
        self.shared.sink.send(line);
    }

    fn protocol(&self) -> &'static str {
        match self.facts.version {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        }
    }

    fn target(&self) -> &str {
        self.facts
            .uri
            .path_and_query()
            .map_or_else(|| self.facts.uri.path(), |pq| pq.as_str())
    }

    fn json(&self) -> String {
        let elapsed = self.facts.started.elapsed();
        let text = |v: &Option<HeaderValue>| {
            v.as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut line = serde_json::json!({
            "time": self.facts.time.to_rfc3339(),
            "request_id": self.facts.request_id,
            "remote_addr": self.facts.peer.map(|p| p.ip().to_string()),
            "method": self.facts.method.as_str(),
            "path": self.facts.uri.path(),
            "query": self.facts.uri.query(),
            "protocol": self.protocol(),
            "status": self.status.as_u16(),
            "bytes": self.bytes,
            "duration_ms": elapsed.as_secs_f64() * 1000.0,
            "referer": text(&self.facts.referer),
            "user_agent": text(&self.facts.user_agent),
            "user": self.user,
            "trace_id": self.facts.trace.as_ref().map(|t| &t.trace_id),
            "span_id": self.facts.trace.as_ref().map(|t| &t.span_id),
            "upstream_addr": self.upstream.as_ref().map(|u| &u.address),
            "upstream_time": self.upstream.as_ref().map(|u| u.duration.as_secs_f64()),
        })
        .to_string();
        line.push('\n');
        line
    }

    fn atoms(&self) -> String {
        let elapsed = self.facts.started.elapsed();
        let mut line = String::with_capacity(160);
        let mut wanted = self.facts.wanted_headers.iter();
        // Text from the client, the app or the environment: escaped, `-` when absent.
        let text = |line: &mut String, value: Option<&[u8]>| match value {
            Some(value) => escape::push_escaped(line, value),
            None => line.push('-'),
        };
        for atom in &self.shared.atoms {
            let _ = match atom {
                Atom::Literal(literal) => {
                    line.push_str(literal);
                    Ok(())
                }
                Atom::RemoteAddr => match self.facts.peer {
                    Some(peer) => write!(line, "{}", peer.ip()),
                    None => write!(line, "-"),
                },
                Atom::Dash => write!(line, "-"),
                Atom::User => {
                    text(&mut line, self.user.as_deref().map(str::as_bytes));
                    Ok(())
                }
                Atom::Time => write!(line, "[{}]", self.facts.time.format("%d/%b/%Y:%H:%M:%S %z")),
                Atom::RequestLine => {
                    let request_line = format!(
                        "{} {} {}",
                        self.facts.method,
                        self.target(),
                        self.protocol()
                    );
                    escape::push_escaped(&mut line, request_line.as_bytes());
                    Ok(())
                }
                Atom::Method => {
                    escape::push_escaped(&mut line, self.facts.method.as_str().as_bytes());
                    Ok(())
                }
                Atom::Path => {
                    escape::push_escaped(&mut line, self.facts.uri.path().as_bytes());
                    Ok(())
                }
                Atom::Query => {
                    let query = self.facts.uri.query().unwrap_or("");
                    escape::push_escaped(&mut line, query.as_bytes());
                    Ok(())
                }
                Atom::Protocol => write!(line, "{}", self.protocol()),
                Atom::Status => write!(line, "{}", self.status.as_u16()),
                Atom::BytesZero => write!(line, "{}", self.bytes),
                Atom::BytesDash if self.bytes == 0 => write!(line, "-"),
                Atom::BytesDash => write!(line, "{}", self.bytes),
                Atom::Referer => {
                    text(&mut line, header_bytes(self.facts.referer.as_ref()));
                    Ok(())
                }
                Atom::UserAgent => {
                    text(&mut line, header_bytes(self.facts.user_agent.as_ref()));
                    Ok(())
                }
                Atom::Seconds => write!(line, "{}", elapsed.as_secs()),
                Atom::Micros => write!(line, "{}", elapsed.as_micros()),
                Atom::Millis => write!(line, "{}", elapsed.as_millis()),
                Atom::DecimalSeconds => write!(line, "{:.6}", elapsed.as_secs_f64()),
                Atom::Pid => write!(line, "<{}>", std::process::id()),
                Atom::RequestHeader(_) => {
                    text(
                        &mut line,
                        header_bytes(wanted.next().and_then(Option::as_ref)),
                    );
                    Ok(())
                }
                Atom::ResponseHeader(name) => {
                    text(&mut line, header_bytes(self.headers.get(name)));
                    Ok(())
                }
                Atom::TraceId => match &self.facts.trace {
                    Some(trace) => write!(line, "{}", trace.trace_id),
                    None => write!(line, "-"),
                },
                Atom::SpanId => match &self.facts.trace {
                    Some(trace) => write!(line, "{}", trace.span_id),
                    None => write!(line, "-"),
                },
                Atom::UpstreamAddr => {
                    text(
                        &mut line,
                        self.upstream.as_ref().map(|u| u.address.as_bytes()),
                    );
                    Ok(())
                }
                Atom::UpstreamTime => match &self.upstream {
                    Some(upstream) => write!(line, "{:.3}", upstream.duration.as_secs_f64()),
                    None => write!(line, "-"),
                },
                Atom::Env(name) => {
                    let value = std::env::var_os(name);
                    text(
                        &mut line,
                        value
                            .as_ref()
                            .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str())),
                    );
                    Ok(())
                }
            };
        }
        line.push('\n');
        line
    }
}

fn header_bytes(value: Option<&HeaderValue>) -> Option<&[u8]> {
    value.map(HeaderValue::as_bytes)
}

/// The response body, counting bytes; writes the line when it ends or is dropped.
struct LoggedBody {
    inner: Body,
    pending: Option<PendingLine>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum_core::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum_core::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(pending)) = (frame.data_ref(), this.pending.as_mut()) {
                    pending.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(pending) = this.pending.take() {
                    pending.write();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.write();
        }
    }
}
