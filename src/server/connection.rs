//! Serving one accepted connection: HTTP/1.1 or HTTP/2, timeouts, graceful close.

use std::cell::RefCell;
use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::Either;
use http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::{Service, ServiceExt};

use super::io::{ActivitySample, ConnectionActivity, GuardedIo};
use super::ConnectionInfo;
use crate::config::{GatewayConfig, TrustedProxies};
use crate::types::GatewayService;

/// Most HTTP/2 streams open at once on one connection.
const H2_MAX_STREAMS: u32 = 256;

/// How much of one HTTP/2 request body the client may send before it is read.
const H2_STREAM_WINDOW: u32 = 256 << 10;

/// The HTTP/2 connection window: room for every stream's window at once (64 MiB).
///
/// Body bytes that have arrived but not been read hold the connection window until they
/// are. A request waiting for a Python thread with a body over `limits.buffer_body` is
/// not read, and with a connection window smaller than the sum of the stream windows
/// (hyper's defaults: 1 MiB each), a few such queued streams use it all up: the streams
/// that run, whose applications wait in `wsgi.input`, get no more bytes, and the
/// connection stalls. Sized this way, queued streams can hold at most their own
/// windows, and a running stream is only ever limited by its own (as nginx, which
/// opens the connection window all the way).
const H2_CONNECTION_WINDOW: u32 = H2_STREAM_WINDOW * H2_MAX_STREAMS;

/// Protocol settings shared by all connections.
#[derive(Clone)]
pub struct ConnectionSettings {
    builder: auto::Builder<TokioExecutor>,
    proxies: Arc<TrustedProxies>,
    proxy_protocol: bool,
    keepalive_timeout: Duration,
    header_timeout: Duration,
    /// How long a client may take no response bytes while some are waiting.
    write_timeout: Duration,
    framing: super::framing::FramingRules,
    backlog: u32,
}

impl ConnectionSettings {
    /// With `server.proxy_protocol`, read the PROXY header of a TCP connection and take
    /// the client address from it (trusted peers only). None: the connection is refused.
    pub(super) async fn proxy_header(
        &self,
        stream: super::Accepted,
        mut info: ConnectionInfo,
    ) -> Option<(super::Accepted, ConnectionInfo)> {
        if !self.proxy_protocol {
            return Some((stream, info));
        }
        let mut stream = stream;
        let tcp = match &mut stream {
            super::Accepted::Tcp(tcp) | super::Accepted::Tls(tcp, _) => tcp,
            super::Accepted::Unix(_) => return Some((stream, info)),
        };
        let peer = info.peer?;
        if !self.proxies.trusts(peer.ip()) {
            tracing::warn!(%peer, "PROXY protocol from a peer outside forwarded_allow_ips: refused");
            return None;
        }
        let header =
            tokio::time::timeout(self.header_timeout, super::proxy_protocol::read_header(tcp))
                .await;
        match header {
            Ok(Ok(client)) => {
                if let Some(client) = client {
                    info.peer = Some(client);
                }
                Some((stream, info))
            }
            Ok(Err(error)) => {
                tracing::info!(%peer, "{error}: connection refused");
                None
            }
            Err(_) => {
                tracing::info!(%peer, "no PROXY header within server.header_timeout");
                None
            }
        }
    }

    /// The listen(2) backlog of the listeners.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }

    /// How long a client may take to send a request head (and to finish a TLS
    /// handshake).
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// hyper's HTTP/1 and HTTP/2 settings from the configuration.
    pub fn new(config: &GatewayConfig) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .half_close(false)
            // Header and idle timeouts are sampled by the connection task (see serve):
            // cheaper than hyper resetting a timer for every request.
            .header_read_timeout(None)
            .max_headers(config.limits.max_header_count)
            // A head that does not fit the read buffer gets 431.
            .max_buf_size(config.limits.max_head_size.as_usize().max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(config.limits.max_head_size.0.min(u32::MAX as u64) as u32)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .keep_alive_interval(None);
        if !config.server.http2 {
            builder = builder.http1_only();
        }
        Self {
            builder,
            proxies: Arc::new(config.server.forwarded_allow_ips.clone()),
            proxy_protocol: config.server.proxy_protocol,
            keepalive_timeout: config.server.keepalive_timeout,
            header_timeout: config.server.header_timeout,
            write_timeout: config.server.write_timeout,
            backlog: config.server.backlog,
            framing: super::framing::FramingRules {
                permit_unconventional_methods: config.limits.permit_unconventional_methods,
            },
        }
    }
}

/// Serve requests on `stream` until the client closes, the connection idles past the
/// keep-alive timeout, or `shutdown` turns true (then requests in flight finish first).
pub(super) async fn serve<T>(
    stream: T,
    info: ConnectionInfo,
    tls: Option<crate::types::TlsSession>,
    service: GatewayService,
    settings: ConnectionSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Option<OwnedFd>
where
    T: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static,
{
    let activity = ConnectionActivity::new();
    activity.socket.set(stream.as_raw_fd());
    let io = TokioIo::new(GuardedIo::new(stream, activity.clone(), settings.framing));
    let requests = activity.clone();
    let tls = tls.map(Arc::new);
    // Set when the server drains: HTTP/1 responses then carry `Connection: close`, so a
    // keep-alive connection ends after its next response instead of being cut while
    // the client may be sending on it.
    let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closing_responses = closing.clone();
    // One copy of the pipeline per connection, called in place while it is ready (it
    // always is unless a layer applies backpressure): no clone of the boxed stack per
    // request. hyper calls the service from this connection's task only.
    let service = RefCell::new(service);
    let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(info);
        if let Some(tls) = &tls {
            parts.extensions.insert(tls.clone());
        }
        let http1 = parts.version != http::Version::HTTP_2;
        if !http1 {
            requests.saw_http2();
        }
        let body = if http1 && !http_body::Body::is_end_stream(&body) {
            Body::new(UnreadGuard {
                inner: body,
                activity: requests.clone(),
                ended: false,
            })
        } else {
            Body::new(body)
        };
        let request = Request::from_parts(parts, body);
        requests.request_started();
        let finished = FinishGuard(requests.clone());
        let response = call_in_place(&service, request);
        let closing = closing_responses.clone();
        let activity = requests.clone();
        async move {
            let mut response = response.await?;
            if http1 && response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                // Only the proxy answers 101 (with the client's upgrade in hand): the
                // bytes that follow belong to the new protocol.
                activity.upgraded();
            }
            if http1 && closing.load(std::sync::atomic::Ordering::Relaxed) {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response.map(|inner| TrackedBody {
                inner,
                _finished: finished,
            }))
        }
    });
    // With upgrades: a 101 from the proxy hands the connection to the upgraded tunnel
    // (the connection future then ends; the tunnel owns the socket).
    let connection = settings
        .builder
        .serve_connection_with_upgrades(io, hyper_service);
    tokio::pin!(connection);
    // Declared after `connection`, so dropped before it: the socket is marked closed
    // before hyper closes it, whichever way this function returns.
    let _socket_closes = SocketCloses(&activity);
    let tick = settings
        .keepalive_timeout
        .min(settings.header_timeout)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the current idle stretch or partial head was first seen.
    let mut idle_since: Option<(std::time::Instant, ActivitySample)> = None;
    let mut head_since: Option<(std::time::Instant, ActivitySample)> = None;
    // When writes were first seen blocked on a client that does not read.
    let mut blocked_since: Option<(std::time::Instant, ActivitySample)> = None;
    let mut state = Drain::Serving;
    if *shutdown.borrow() {
        state = begin_drain(&activity, &closing);
        if state == Drain::ShutdownSent {
            connection.as_mut().graceful_shutdown();
        }
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = &result {
                    tracing::debug!(peer = ?info.peer, "connection ended: {error}");
                    // A head refused (400, 414, 431) while the client may still be
                    // sending: linger too.
                    if error
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(|e| e.is_parse() || e.is_parse_too_large())
                    {
                        activity.socket.keep();
                    }
                }
                // A request body was left unread: the caller drains what the client
                // still sends, so that the response is not lost to a reset. (Never
                // after a 101: the socket then carries the new protocol.)
                let socket = activity.socket.close();
                return socket.filter(|_| !activity.is_upgraded());
            }
            _ = shutdown.changed(), if state == Drain::Serving => {
                state = begin_drain(&activity, &closing);
                if state == Drain::ShutdownSent {
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep(DRAIN_IDLE_GRACE), if matches!(state, Drain::AwaitingLastRequest(_)) => {
                // A connection that stays idle while draining is closed; one that sends
                // a request gets its answer with `Connection: close` first.
                if let Drain::AwaitingLastRequest(before) = state {
                    let now = activity.sample();
                    // A connection whose protocol was not known when the drain began
                    // may turn out to be HTTP/2: it gets GOAWAY like the others.
                    if activity.is_http2() || (now.is_idle() && now.unchanged_since(&before)) {
                        connection.as_mut().graceful_shutdown();
                        state = Drain::ShutdownSent;
                    } else {
                        state = Drain::AwaitingLastRequest(now);
                    }
                }
            }
            _ = ticks.tick() => {
                let now = std::time::Instant::now();
                let sample = activity.sample();
                idle_since = match idle_since {
                    Some((since, first)) if sample.is_idle() && sample.unchanged_since(&first) => {
                        if state == Drain::Serving && now - since >= settings.keepalive_timeout {
                            connection.as_mut().graceful_shutdown();
                            state = Drain::ShutdownSent;
                        }
                        Some((since, first))
                    }
                    _ => sample.is_idle().then_some((now, sample)),
                };
                head_since = match head_since {
                    Some((since, first)) if sample.same_partial_head(&first) => {
                        if now - since >= settings.header_timeout {
                            tracing::info!(peer = ?info.peer, "request head not received within server.header_timeout; closing");
                            return None;
                        }
                        Some((since, first))
                    }
                    _ => sample.head_is_partial().then_some((now, sample)),
                };
                // nginx's send_timeout: a client that takes no response bytes for
                // server.write_timeout loses the connection (and the response body
                // below, an upstream's or a file's, is dropped with it).
                blocked_since = match blocked_since {
                    Some((since, first)) if sample.same_blocked_write(&first) => {
                        if now - since >= settings.write_timeout {
                            tracing::info!(peer = ?info.peer, "client took no response bytes within server.write_timeout; closing");
                            return None;
                        }
                        Some((since, first))
                    }
                    _ => sample.write_is_blocked().then_some((now, sample)),
                };
            }
        }
    }
}

/// Marks the connection's socket closed for [`super::linger`] when dropped.
struct SocketCloses<'a>(&'a ConnectionActivity);

impl Drop for SocketCloses<'_> {
    fn drop(&mut self) {
        self.0.socket.close();
    }
}

/// An HTTP/1 request body; dropped before its end, it has the connection keep its
/// socket for a lingering close.
struct UnreadGuard {
    inner: Incoming,
    activity: Arc<ConnectionActivity>,
    ended: bool,
}

impl http_body::Body for UnreadGuard {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
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

impl Drop for UnreadGuard {
    fn drop(&mut self) {
        if !self.ended && !http_body::Body::is_end_stream(&self.inner) {
            self.activity.socket.keep();
        }
    }
}

/// How long an HTTP/1 connection may stay idle once the server drains.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(250);

/// Where a connection is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    /// Not shutting down.
    Serving,
    /// HTTP/1 while draining: the next response closes the connection, or it is closed
    /// after an idle grace period (the sample is the activity at the last check).
    AwaitingLastRequest(ActivitySample),
    /// hyper's graceful shutdown has been started.
    ShutdownSent,
}

/// Start draining: HTTP/1 finishes with its next response (or closes after an idle
/// grace period); HTTP/2 is answered [`Drain::ShutdownSent`], and the caller sends
/// GOAWAY through hyper's graceful shutdown (race-free by design).
fn begin_drain(activity: &ConnectionActivity, closing: &std::sync::atomic::AtomicBool) -> Drain {
    if activity.is_http2() {
        return Drain::ShutdownSent;
    }
    closing.store(true, std::sync::atomic::Ordering::Relaxed);
    Drain::AwaitingLastRequest(activity.sample())
}

/// Call the connection's service directly if it is ready now; otherwise wait for a
/// clone of it to become ready, as `ServiceExt::oneshot` does.
fn call_in_place(service: &RefCell<GatewayService>, request: Request<Body>) -> ResponseFuture {
    let mut service = service.borrow_mut();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => Either::Left(service.call(request)),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => Either::Right(service.clone().oneshot(request)),
    }
}

type ResponseFuture = Either<
    <GatewayService as Service<Request<Body>>>::Future,
    tower::util::Oneshot<GatewayService, Request<Body>>,
>;

/// Marks the request finished when dropped: with the response body, or with the
/// response future if the client went away first.
struct FinishGuard(Arc<ConnectionActivity>);

impl Drop for FinishGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that reports to the connection when it is done.
struct TrackedBody {
    inner: Body,
    _finished: FinishGuard,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
