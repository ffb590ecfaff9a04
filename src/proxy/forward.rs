//! One proxied request, phase by phase: pick a server, get a connection (pooled or
//! new), send the head and stream the body, wait for the response head (at most
//! `read_timeout`), then stream the response back or hand an upgraded connection over.
//! Each attempt is a client span with `traceparent` injected; each failure is logged
//! with the upstream's name and the server's address, counted against the server's
//! health, and retried only where that is safe.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use gateway_middleware::UpstreamInfo;
use http::uri::{PathAndQuery, Scheme};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http2, TrySendError};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::propagation::Injector;
use tower::Service;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::balance::Tried;
use super::body::{Progress, ProgressBody, Release, UpstreamBody};
use super::connect::{self, ConnectError};
use super::h1;
use super::headers::{self, RequestRewrite};
use super::health::{now_ms, Verdict};
use super::pool::{Conn, Http1Conn, RawConn};
use super::{bad_gateway, is_idempotent, Server, Upstream};
use crate::config::{HostPolicy, ServerAddress};
use crate::metrics::UpstreamOutcome;
use crate::types::{error_response, open_count, ConnectionInfo};

/// The proxy to one upstream, as a tower service: what a `proxy = "NAME"` route ends in.
#[derive(Clone)]
pub struct Proxy {
    upstream: Arc<Upstream>,
}

impl Proxy {
    pub(super) fn new(upstream: Arc<Upstream>) -> Self {
        Self { upstream }
    }

    /// The upstream's name (the URL of an inline one).
    pub fn name(&self) -> &str {
        &self.upstream.name
    }
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let upstream = self.upstream.clone();
        Box::pin(async move { Ok(forward(&upstream, request).await) })
    }
}

/// What went wrong below an attempt: hyper's error or the `h1` client's.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// No connection: the request was not sent, so any method may go elsewhere.
    #[error("{0}")]
    Connect(ConnectError),
    /// The connection ended before any response byte: the server may have acted on
    /// the request.
    #[error("connection closed before the response head: {0}")]
    Reset(Cause),
    /// No response head within `read_timeout`.
    #[error("no response head within {0:?}")]
    Timeout(Duration),
    /// The connection closed before it took the request (nothing was sent).
    #[error("connection closed before the request was sent: {0}")]
    Unsent(Cause),
    /// The client's request body made no progress for `read_timeout`.
    #[error("the client's request body stalled for {0:?}")]
    ClientStalled(Duration),
    /// The response could not be parsed.
    #[error("malformed response: {0}")]
    Malformed(Cause),
    /// The client's request body failed (the client left or sent a malformed chunk).
    #[error("the client's request body failed: {0}")]
    ClientBody(hyper::Error),
}

impl Failure {
    fn outcome(&self) -> UpstreamOutcome {
        match self {
            Failure::Connect(_) => UpstreamOutcome::ConnectError,
            Failure::Reset(_) | Failure::Unsent(_) => UpstreamOutcome::Reset,
            Failure::Timeout(_) => UpstreamOutcome::Timeout,
            Failure::ClientStalled(_) => UpstreamOutcome::ClientAborted,
            Failure::Malformed(_) => UpstreamOutcome::Malformed,
            Failure::ClientBody(_) => UpstreamOutcome::ClientAborted,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Failure::ClientBody(_) => StatusCode::BAD_REQUEST,
            Failure::ClientStalled(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The server's fault (counts against its health).
    fn blames_server(&self) -> bool {
        !matches!(self, Failure::ClientBody(_) | Failure::ClientStalled(_))
    }

    fn error_type(&self) -> &'static str {
        self.outcome().label()
    }
}

/// Counts a request in flight to a server until dropped (with the response body).
struct InFlight(Arc<Server>);

impl InFlight {
    fn new(server: &Arc<Server>) -> Self {
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(server.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The parts of the upstream request that do not depend on the server.
struct Outgoing {
    method: Method,
    target: PathAndQuery,
    headers: HeaderMap,
    /// Some when the client asked for an upgrade the proxy can hand over.
    upgrade: Option<OnUpgrade>,
}

async fn forward(upstream: &Upstream, mut request: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let key = upstream.balancer.request_key(&request);
    let idempotent = is_idempotent(&request);
    // Only a request that came straight from the server can be upgraded (not one
    // rebuilt by the WSGI bridge).
    let upgrade_protocol = headers::requested_upgrade(request.version(), request.headers())
        .filter(|_| request.extensions().get::<OnUpgrade>().is_some());
    let client_upgrade = upgrade_protocol
        .as_ref()
        .map(|_| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let info = parts.extensions.get::<ConnectionInfo>().copied();
    let rewrite = RequestRewrite {
        host: &upstream.config.host,
        forwarded: upstream.config.forwarded,
        strip_prefix: upstream.strip_prefix.as_deref(),
    };
    let target = headers::upstream_head(
        &rewrite,
        &parts.uri,
        &mut parts.headers,
        info.as_ref(),
        upgrade_protocol,
        "",
    );
    let bodiless = http_body::Body::is_end_stream(&body);
    let mut outgoing = Outgoing {
        method: parts.method,
        target,
        headers: parts.headers,
        upgrade: client_upgrade,
    };
    let mut body = Some(body);
    let mut tried = Tried::default();
    let mut addresses = String::new();
    let mut retries_left = upstream.config.retries;
    let mut first_attempt = true;
    let mut last: Option<(Arc<Server>, Failure)> = None;
    while let Some(index) = upstream
        .balancer
        .pick(&upstream.servers, key, tried, now_ms())
    {
        tried.insert(index);
        let server = upstream.servers[index].clone();
        if !addresses.is_empty() {
            addresses.push_str(", ");
        }
        addresses.push_str(&server.label);
        let in_flight = InFlight::new(&server);
        // The first attempt starts with the request (one clock read less).
        let attempt_started = if first_attempt {
            started
        } else {
            Instant::now()
        };
        first_attempt = false;
        if let Some(meter) = &server.meter {
            meter.attempt_started();
        }
        let span = client_span(&outgoing.method, &server, &outgoing.target);
        let may_retry = retries_left > 0;
        let result = attempt(
            upstream,
            &server,
            &mut outgoing,
            &mut body,
            may_retry,
            idempotent && bodiless,
            &span,
        )
        .await;
        let finished = Instant::now();
        let elapsed = finished - attempt_started;
        match result {
            Ok(sent) => {
                let status = sent.status();
                record_status(&span, status);
                if let Some(meter) = &server.meter {
                    meter.attempt_finished(UpstreamOutcome::Status(status.as_u16()), Some(elapsed));
                }
                if status.is_server_error() {
                    failed(upstream, &server, &format!("answered {status}"));
                } else if server.health.success() {
                    tracing::info!(upstream = %upstream.name, server = %server.label, "server answers again");
                    if let Some(meter) = &server.meter {
                        meter.set_healthy(true);
                    }
                }
                let info = UpstreamInfo {
                    address: addresses,
                    duration: finished - started,
                };
                return respond(
                    upstream,
                    server,
                    sent,
                    outgoing.upgrade.take(),
                    info,
                    (in_flight, span),
                    outgoing.method == Method::HEAD,
                );
            }
            Err(failure) => {
                if !span.is_disabled() {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", failure.error_type());
                }
                if let Some(meter) = &server.meter {
                    meter.attempt_finished(failure.outcome(), None);
                }
                drop(in_flight);
                if failure.blames_server() {
                    failed(upstream, &server, &failure.to_string());
                }
                // Safe to retry: the request never left (connect error), or nothing came
                // back and sending it again has no further effect.
                let retry = retries_left > 0
                    && match &failure {
                        Failure::Connect(_) | Failure::Unsent(_) => true,
                        Failure::Reset(_) => idempotent && bodiless,
                        _ => false,
                    };
                if retry {
                    retries_left -= 1;
                    if body.is_none() {
                        body = Some(Body::empty());
                    }
                    tracing::warn!(
                        upstream = %upstream.name,
                        server = %server.label,
                        "{failure}; retrying on another server"
                    );
                    last = Some((server, failure));
                    continue;
                }
                let status = failure.status();
                if failure.blames_server() {
                    tracing::error!(
                        upstream = %upstream.name,
                        server = %server.label,
                        "{} {} {failure}: {}",
                        outgoing.method,
                        outgoing.target,
                        status.as_u16()
                    );
                } else {
                    tracing::info!(upstream = %upstream.name, server = %server.label, "{failure}: {}", status.as_u16());
                }
                return failed_response(status, addresses, started);
            }
        }
    }
    match last {
        Some((server, failure)) => tracing::error!(
            upstream = %upstream.name,
            server = %server.label,
            "{} {} no server left after {failure}: 502",
            outgoing.method,
            outgoing.target
        ),
        None => tracing::error!(
            upstream = %upstream.name,
            "{} {} no healthy server: 502",
            outgoing.method,
            outgoing.target
        ),
    }
    failed_response(StatusCode::BAD_GATEWAY, addresses, started)
}

fn failed_response(status: StatusCode, addresses: String, started: Instant) -> Response<Body> {
    let mut response = if status == StatusCode::BAD_GATEWAY {
        bad_gateway()
    } else {
        error_response(status)
    };
    if !addresses.is_empty() {
        response.extensions_mut().insert(UpstreamInfo {
            address: addresses,
            duration: started.elapsed(),
        });
    }
    response
}

/// Count a failure against `server`'s health; log an ejection.
fn failed(upstream: &Upstream, server: &Arc<Server>, what: &str) {
    let health = &upstream.config.health;
    if server
        .health
        .failure(health.max_fails, health.cooldown, upstream.ejectable)
        == Verdict::Ejected
    {
        tracing::warn!(
            upstream = %upstream.name,
            server = %server.label,
            "{what}: {} failures in a row, server ejected for {:?}",
            health.max_fails,
            health.cooldown
        );
        if let Some(meter) = &server.meter {
            meter.set_healthy(false);
        }
    }
}

/// Send the request to `server`: Ok with its response head, or why not. The request
/// body stays in `body` until it is sent (so a connect error can go elsewhere with it).
/// A `replayable` request (idempotent, no body) that a pooled connection loses before
/// any response byte is sent once more on a fresh connection to the same server: the
/// server closed an idle connection as the request went out (nginx does the same for
/// its cached connections, without counting a try).
async fn attempt(
    upstream: &Upstream,
    server: &Arc<Server>,
    outgoing: &mut Outgoing,
    body_slot: &mut Option<Body>,
    may_retry: bool,
    replayable: bool,
    span: &tracing::Span,
) -> Result<Sent, Failure> {
    let upgrade = outgoing.upgrade.is_some();
    let (conn, mut reused) = connection(upstream, server, upgrade, false)
        .await
        .map_err(Failure::Connect)?;
    let bodiless = body_slot
        .as_ref()
        .is_none_or(http_body::Body::is_end_stream);
    let mut conn = match conn {
        Conn::Raw(raw) if bodiless => {
            return exchange(upstream, server, outgoing, raw, reused, replayable, span).await;
        }
        other => in_hyper(other).await.map_err(Failure::Connect)?,
    };
    let headers = if may_retry || replayable {
        outgoing.headers.clone()
    } else {
        std::mem::take(&mut outgoing.headers)
    };
    let body = body_slot.take().unwrap_or_else(Body::empty);
    let progress = (!http_body::Body::is_end_stream(&body)).then(Progress::new);
    let body = match &progress {
        Some(progress) => Body::new(ProgressBody::new(body, progress.clone())),
        None => body,
    };
    let mut request = upstream_request(upstream, server, outgoing, headers, body, span);
    let read_timeout = upstream.config.read_timeout;
    let mut replayed = false;
    loop {
        set_target(&mut request, &conn, server, &outgoing.target);
        let sent = within(read_timeout, progress.as_deref(), send(conn, request)).await;
        match sent {
            Err(failure) => return Err(failure),
            Ok(Ok(sent)) => return checked(sent, &outgoing.method),
            Ok(Err(mut error)) => {
                let unsent = error.take_message();
                let error = error.into_error();
                match unsent {
                    // A pooled connection the server had closed: the request never
                    // left, so it goes on a fresh connection to the same server.
                    Some(returned) if reused => {
                        tracing::debug!(upstream = %upstream.name, server = %server.label, "pooled connection closed ({error}); reconnecting");
                        request = returned;
                    }
                    Some(returned) => {
                        *body_slot = Some(returned.into_body());
                        return Err(Failure::Unsent(Box::new(error)));
                    }
                    None => {
                        let failure = classify(error);
                        let stale = reused && replayable && !replayed;
                        if !(stale && matches!(failure, Failure::Reset(_))) {
                            return Err(failure);
                        }
                        tracing::debug!(upstream = %upstream.name, server = %server.label, "pooled connection lost ({failure}); sending again on a fresh one");
                        replayed = true;
                        let headers = outgoing.headers.clone();
                        request = upstream_request(
                            upstream,
                            server,
                            outgoing,
                            headers,
                            Body::empty(),
                            span,
                        );
                    }
                }
                let fresh;
                (fresh, reused) = connection(upstream, server, upgrade, true)
                    .await
                    .map_err(Failure::Connect)?;
                conn = in_hyper(fresh).await.map_err(Failure::Connect)?;
            }
        }
    }
}

/// [`attempt`] for a request without a body on an HTTP/1.1 connection: through the
/// `h1` client. The headers go back into `outgoing` when it fails, for the next server.
async fn exchange(
    upstream: &Upstream,
    server: &Arc<Server>,
    outgoing: &mut Outgoing,
    mut raw: Box<RawConn>,
    mut reused: bool,
    replayable: bool,
    span: &tracing::Span,
) -> Result<Sent, Failure> {
    let had_host = outgoing.headers.contains_key(header::HOST);
    let headers = std::mem::take(&mut outgoing.headers);
    let request = upstream_request(upstream, server, outgoing, headers, Body::empty(), span);
    let read_timeout = upstream.config.read_timeout;
    let mut replayed = false;
    let result = loop {
        let sent = within(
            read_timeout,
            None,
            h1::exchange(
                raw,
                request.method(),
                outgoing.target.as_str(),
                request.headers(),
                server,
                read_timeout,
            ),
        )
        .await;
        let error = match sent {
            Err(failure) => break Err(failure),
            Ok(Ok(response)) => break Ok(Sent::H1(response)),
            Ok(Err(error)) => error,
        };
        // A pooled connection the server had closed (the write failed: the request
        // never left), or one it closed as the request went out: once more on a fresh
        // connection, as `attempt` does.
        let again =
            reused && (error.unsent() || (error.before_response() && replayable && !replayed));
        if !again {
            break Err(classify_h1(error));
        }
        tracing::debug!(upstream = %upstream.name, server = %server.label, "pooled connection lost ({error}); sending again on a fresh one");
        replayed |= !error.unsent();
        match connection(upstream, server, false, true).await {
            Ok((Conn::Raw(fresh), fresh_reused)) => (raw, reused) = (fresh, fresh_reused),
            // The server now speaks HTTP/2 (`http2 = true` and it chose h2 this time):
            // through hyper's client on that connection.
            Ok((conn, _)) => {
                let kept = request.headers().clone();
                let result = in_hyper_once(upstream, server, outgoing, conn, request).await;
                if result.is_err() {
                    outgoing.headers = restored(kept, had_host);
                }
                return result;
            }
            Err(error) => break Err(Failure::Connect(error)),
        }
    };
    if result.is_err() {
        outgoing.headers = restored(request.into_parts().0.headers, had_host);
    }
    result
}

/// The headers of a failed attempt, ready for the next server: without the `Host`
/// this server's policy added.
fn restored(mut headers: HeaderMap, had_host: bool) -> HeaderMap {
    if !had_host {
        headers.remove(header::HOST);
    }
    headers
}

/// Send `request` once through hyper's client on `conn`, with the checks `attempt`
/// makes.
async fn in_hyper_once(
    upstream: &Upstream,
    server: &Arc<Server>,
    outgoing: &Outgoing,
    conn: Conn,
    mut request: Request<Body>,
) -> Result<Sent, Failure> {
    let conn = in_hyper(conn).await.map_err(Failure::Connect)?;
    set_target(&mut request, &conn, server, &outgoing.target);
    let read_timeout = upstream.config.read_timeout;
    match within(read_timeout, None, send(conn, request)).await? {
        Ok(sent) => checked(sent, &outgoing.method),
        Err(error) => Err(classify(error.into_error())),
    }
}

/// A response from hyper's client, refused with the same strictness as `h1`'s (hyper
/// would decode an ambiguous framing its own way).
fn checked(sent: Sent, method: &Method) -> Result<Sent, Failure> {
    if let Sent::Hyper { response, .. } = &sent {
        h1::check_framing(
            response.status(),
            response.headers(),
            method == Method::HEAD,
        )
        .map_err(|error| Failure::Malformed(Box::new(error)))?;
    }
    Ok(sent)
}

/// The request for `server`, before its target is set.
fn upstream_request(
    upstream: &Upstream,
    server: &Server,
    outgoing: &Outgoing,
    headers: HeaderMap,
    body: Body,
    span: &tracing::Span,
) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = outgoing.method.clone();
    *request.headers_mut() = headers;
    set_host(upstream, server, request.headers_mut());
    inject_trace_context(span, request.headers_mut());
    request
}

/// Wait for `sending` (the request going out and the response head coming back) while
/// something moves: the request body (when there is one) and then the response head
/// may each take `read_timeout` since the last progress.
async fn within<F: Future>(
    read_timeout: Duration,
    progress: Option<&Progress>,
    sending: F,
) -> Result<F::Output, Failure> {
    let mut sending = std::pin::pin!(sending);
    let mut deadline = tokio::time::Instant::now() + read_timeout;
    loop {
        tokio::select! {
            output = sending.as_mut() => return Ok(output),
            _ = tokio::time::sleep_until(deadline) => {
                let Some(progress) = progress else {
                    return Err(Failure::Timeout(read_timeout));
                };
                let idle = Duration::from_millis(progress.idle_ms());
                if idle >= read_timeout {
                    return Err(if progress.is_done() {
                        Failure::Timeout(read_timeout)
                    } else {
                        Failure::ClientStalled(read_timeout)
                    });
                }
                deadline = tokio::time::Instant::now() + (read_timeout - idle);
            }
        }
    }
}

/// What a failed send means.
fn classify(error: hyper::Error) -> Failure {
    if error.is_user() {
        Failure::ClientBody(error)
    } else if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        Failure::Malformed(Box::new(error))
    } else {
        Failure::Reset(Box::new(error))
    }
}

/// The failure an `h1` exchange error is.
fn classify_h1(error: h1::ExchangeError) -> Failure {
    if error.unsent() {
        Failure::Unsent(Box::new(error))
    } else if error.is_malformed() {
        Failure::Malformed(Box::new(error))
    } else {
        Failure::Reset(Box::new(error))
    }
}

/// The `Host` the policy says, where it depends on the server.
fn set_host(upstream: &Upstream, server: &Server, headers: &mut HeaderMap) {
    let needed = match upstream.config.host {
        HostPolicy::Upstream => true,
        HostPolicy::Client => !headers.contains_key(header::HOST),
        HostPolicy::Fixed(_) => false,
    };
    if needed {
        if let Ok(value) = HeaderValue::from_str(&server.authority) {
            headers.insert(header::HOST, value);
        }
    }
}

/// Origin form for HTTP/1.1; HTTP/2 needs the scheme and authority.
fn set_target(request: &mut Request<Body>, conn: &Conn, server: &Server, target: &PathAndQuery) {
    match conn {
        Conn::Raw(_) | Conn::Http1(_) | Conn::Http1Task(_) => {
            *request.version_mut() = Version::HTTP_11;
            *request.uri_mut() = Uri::from(target.clone());
        }
        Conn::Http2(_) => {
            *request.version_mut() = Version::HTTP_2;
            let scheme = match server.address {
                ServerAddress::Https { .. } => Scheme::HTTPS,
                _ => Scheme::HTTP,
            };
            // HTTP/2 names the host in :authority, not Host (nginx refuses both).
            let host = request.headers_mut().remove(header::HOST);
            let authority = host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or(&server.authority)
                .to_owned();
            if let Ok(uri) = Uri::builder()
                .scheme(scheme)
                .authority(authority)
                .path_and_query(target.clone())
                .build()
            {
                *request.uri_mut() = uri;
            }
        }
    }
}

/// A response head and, for a pooled HTTP/1.1 connection, the connection to drive
/// while the body is read and to pool when it ends.
/// A response head from hyper's client (and the HTTP/1.1 connection to drive while
/// its body is read), or from the `h1` client.
enum Sent {
    Hyper {
        response: Response<Incoming>,
        conn: Option<Box<Http1Conn>>,
    },
    H1(Response<h1::ResponseBody>),
}

impl Sent {
    fn status(&self) -> StatusCode {
        match self {
            Sent::Hyper { response, .. } => response.status(),
            Sent::H1(response) => response.status(),
        }
    }
}

/// `conn` ready for hyper's client: a bare HTTP/1.1 connection is wrapped in it.
async fn in_hyper(conn: Conn) -> Result<Conn, ConnectError> {
    match conn {
        Conn::Raw(raw) => Http1Conn::wrap(raw)
            .await
            .map(Conn::Http1)
            .map_err(ConnectError::Handshake),
        other => Ok(other),
    }
}

/// Send `request` through hyper's client on `conn` (see [`in_hyper`]).
async fn send(conn: Conn, request: Request<Body>) -> Result<Sent, TrySendError<Request<Body>>> {
    match conn {
        Conn::Raw(_) => unreachable!("callers put bare connections in hyper first (in_hyper)"),
        Conn::Http1(mut conn) => {
            let mut response = std::pin::pin!(conn.sender.try_send_request(request));
            let mut open = true;
            let response = std::future::poll_fn(|cx| {
                // The connection does the I/O, the response future takes the head.
                if open && conn.drive(cx).is_ready() {
                    open = false;
                }
                response.as_mut().poll(cx)
            })
            .await?;
            Ok(Sent::Hyper {
                response,
                conn: open.then_some(conn),
            })
        }
        Conn::Http1Task(mut sender) => {
            let response = sender.try_send_request(request).await?;
            Ok(Sent::Hyper {
                response,
                conn: None,
            })
        }
        Conn::Http2(mut sender) => {
            let response = sender.try_send_request(request).await?;
            Ok(Sent::Hyper {
                response,
                conn: None,
            })
        }
    }
}

/// A connection to `server`: pooled unless `fresh`; for an upgrade, HTTP/1.1 with a
/// task of its own. The bool is true for a pooled one.
async fn connection(
    upstream: &Upstream,
    server: &Arc<Server>,
    upgrade: bool,
    fresh: bool,
) -> Result<(Conn, bool), ConnectError> {
    let http2 = upstream.config.http2 && !upgrade;
    if !fresh {
        if http2 {
            if let Some(sender) = server.pool.checkout_http2() {
                return Ok((Conn::Http2(sender), true));
            }
        }
        if let Some(conn) = server.pool.checkout_http1() {
            if upgrade {
                return for_upgrade(server, conn, true).await;
            }
            return Ok((Conn::Raw(conn), true));
        }
    }
    // Boxed: connecting (TCP, TLS, the HTTP/2 handshake) is a large future that every
    // request's future would otherwise carry, and move, though it is rarely needed.
    Box::pin(open(upstream, server, http2, upgrade, fresh)).await
}

/// An HTTP/1.1 connection for an upgrade: in hyper's client, driven by a task of its
/// own.
async fn for_upgrade(
    server: &Server,
    conn: Box<RawConn>,
    reused: bool,
) -> Result<(Conn, bool), ConnectError> {
    let conn = Http1Conn::wrap(conn)
        .await
        .map_err(ConnectError::Handshake)?;
    conn.into_task(server.label.clone())
        .map(|sender| (Conn::Http1Task(sender), reused))
        .ok_or_else(|| ConnectError::Io(std::io::Error::other("connection closed")))
}

/// A new connection to `server`.
async fn open(
    upstream: &Upstream,
    server: &Arc<Server>,
    http2: bool,
    upgrade: bool,
    fresh: bool,
) -> Result<(Conn, bool), ConnectError> {
    let stream = connect::connect(
        &server.address,
        server.resolved,
        upstream.tls.as_ref(),
        upstream.config.connect_timeout,
        !http2,
    )
    .await?;
    let https = matches!(server.address, ServerAddress::Https { .. });
    let io = TokioIo::new(stream);
    if http2 && (!https || io.inner().negotiated_h2()) {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        let label = server.label.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(server = %label, "upstream HTTP/2 connection ended: {error}");
            }
        });
        // A fresh connection (a health check, a retry) is used once, not shared.
        if !fresh {
            server.pool.share_http2(sender.clone());
        }
        return Ok((Conn::Http2(sender), false));
    }
    let conn = RawConn::new(io.into_inner());
    if upgrade {
        return for_upgrade(server, conn, false).await;
    }
    Ok((Conn::Raw(conn), false))
}

/// The client's response from the upstream's: hop-by-hop fields removed, the body
/// streamed, an upgrade handed over.
fn respond(
    upstream: &Upstream,
    server: Arc<Server>,
    sent: Sent,
    client_upgrade: Option<OnUpgrade>,
    info: UpstreamInfo,
    held: (InFlight, tracing::Span),
    head_request: bool,
) -> Response<Body> {
    let (mut parts, body) = match sent {
        Sent::Hyper { response, conn } => {
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(client) = client_upgrade {
                    return switch_protocols(upstream, &server, response, client, info);
                }
                // hyper never hands a 101 to a request that did not ask for one.
                tracing::error!(upstream = %upstream.name, server = %server.label, "101 to a request that asked for no upgrade: 502");
                return bad_gateway();
            }
            // Pooled again only after an HTTP/1.1 response to anything but a HEAD (see
            // `h1`): hyper would send the next request's body to an HTTP/1.0 server
            // as if it had none.
            let reusable = response.version() == Version::HTTP_11 && !head_request;
            let release = conn.filter(|_| reusable).map(|conn| Release {
                conn,
                server: server.clone(),
            });
            let (parts, incoming) = response.into_parts();
            let body = if http_body::Body::is_end_stream(&incoming) {
                if let Some(release) = release {
                    release.finish();
                }
                Body::empty()
            } else {
                Body::new(UpstreamBody::new(
                    incoming,
                    release,
                    server.clone(),
                    upstream.config.read_timeout,
                    Box::new(held),
                ))
            };
            (parts, body)
        }
        Sent::H1(response) => {
            let (parts, mut body) = response.into_parts();
            let body = if http_body::Body::is_end_stream(&body) {
                Body::empty()
            } else {
                body.hold(Box::new(held));
                Body::new(body)
            };
            (parts, body)
        }
    };
    headers::remove_hop_by_hop(&mut parts.headers);
    headers::single_content_length(&mut parts.headers);
    if upstream.config.rewrite_location {
        let fixed_host = match &upstream.config.host {
            HostPolicy::Fixed(value) => value.to_str().ok(),
            _ => None,
        };
        let own = [server.authority.as_str(), fixed_host.unwrap_or("")];
        let own = &own[..if fixed_host.is_some() { 2 } else { 1 }];
        headers::rewrite_location(&mut parts.headers, own, upstream.strip_prefix.as_deref());
    }
    parts.extensions = http::Extensions::new();
    parts.extensions.insert(info);
    Response::from_parts(parts, body)
}

/// Hand a 101 over: both connections, once upgraded, are spliced by a task of their
/// own (no timeout: a WebSocket may idle).
fn switch_protocols(
    upstream: &Upstream,
    server: &Server,
    mut response: Response<Incoming>,
    client: OnUpgrade,
    info: UpstreamInfo,
) -> Response<Body> {
    let protocol = response.headers().get(header::UPGRADE).cloned();
    let upstream_side = hyper::upgrade::on(&mut response);
    let (name, label) = (upstream.name.clone(), server.label.clone());
    // A draining worker waits for the tunnel (up to server.graceful_timeout).
    let tunnel = open_count::tunnels().hold();
    tokio::spawn(async move {
        let _tunnel = tunnel;
        let (client, upstream_io) = match tokio::join!(client, upstream_side) {
            (Ok(client), Ok(upstream_io)) => (client, upstream_io),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(upstream = %name, server = %label, "upgrade failed: {error}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream_io = TokioIo::new(upstream_io);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream_io).await {
            Ok((up, down)) => {
                tracing::debug!(upstream = %name, server = %label, up, down, "upgraded connection closed")
            }
            Err(error) => {
                tracing::debug!(upstream = %name, server = %label, "upgraded connection ended: {error}")
            }
        }
    });
    let (mut parts, _) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = protocol {
        parts.headers.insert(header::UPGRADE, protocol);
    }
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.extensions = http::Extensions::new();
    parts.extensions.insert(info);
    Response::from_parts(parts, Body::empty())
}

/// An active health check of `server`: `GET health.path` on a fresh connection; a
/// 2xx or 3xx within `health.timeout` passes.
pub(super) async fn health_check(upstream: &Upstream, server: &Arc<Server>) -> (bool, String) {
    let Some(path) = upstream.config.health.path.as_deref() else {
        return (true, String::new());
    };
    let check = async {
        let (conn, _) = connection(upstream, server, false, true)
            .await
            .map_err(|e| e.to_string())?;
        let conn = in_hyper(conn).await.map_err(|e| e.to_string())?;
        let mut request = Request::new(Body::empty());
        let target = PathAndQuery::try_from(path).map_err(|e| e.to_string())?;
        if let HostPolicy::Fixed(value) = &upstream.config.host {
            request.headers_mut().insert(header::HOST, value.clone());
        }
        set_host(upstream, server, request.headers_mut());
        set_target(&mut request, &conn, server, &target);
        let sent = send(conn, request)
            .await
            .map_err(|e| e.into_error().to_string())?;
        let status = sent.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("{path} answered {status}"))
        }
    };
    match tokio::time::timeout(upstream.config.health.timeout, check).await {
        Ok(Ok(())) => (true, String::new()),
        Ok(Err(error)) => (false, error),
        Err(_) => (
            false,
            format!("no answer within {:?}", upstream.config.health.timeout),
        ),
    }
}

/// The client span of one attempt (disabled, and free, unless traces are exported).
fn client_span(method: &Method, server: &Server, target: &PathAndQuery) -> tracing::Span {
    if !crate::telemetry::tracing_enabled() {
        return tracing::Span::none();
    }
    let (address, port) = match &server.address {
        ServerAddress::Http { host, port } | ServerAddress::Https { host, port } => {
            (host.as_str(), i64::from(*port))
        }
        ServerAddress::Unix(_) => (server.label.as_str(), 0),
    };
    tracing::info_span!(
        target: crate::telemetry::SPAN_TARGET,
        "HTTP client request",
        otel.name = %method,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = %method,
        http.response.status_code = Empty,
        server.address = address,
        server.port = port,
        url.path = target.path(),
        error.type = Empty,
        wsgi_gateway.upstream = %server.upstream,
    )
}

fn record_status(span: &tracing::Span, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Replace the client's `traceparent` with the attempt's span (when traces are
/// exported; otherwise the client's passes through).
fn inject_trace_context(span: &tracing::Span, headers: &mut HeaderMap) {
    if span.is_disabled() || span.is_none() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}
