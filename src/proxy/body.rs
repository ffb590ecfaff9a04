//! The upstream's response body on its way to the client: streamed frame by frame (the
//! client's pace is the upstream's pace: hyper reads the next frame only when the last
//! one was written), cut when the upstream pauses longer than `read_timeout`, and its
//! HTTP/1.1 connection handed back to the pool once the body has ended cleanly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::health::now_ms;
use super::pool::Http1Conn;
use super::Server;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The error a cut response body ends with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The upstream failed mid-body (reset, malformed chunk).
    #[error("upstream {server}: response body: {source}")]
    Upstream {
        server: String,
        source: hyper::Error,
    },
    /// No body bytes for `read_timeout`.
    #[error("upstream {server}: no response body bytes for {timeout:?}")]
    Stalled { server: String, timeout: Duration },
    /// The body broke its framing (a malformed chunk, the connection closed short).
    #[error("upstream {server}: response body: {what}")]
    Framing { server: String, what: String },
}

/// The `read_timeout` between two pieces of a response body: armed when the body
/// waits for the upstream, disarmed by progress.
pub(crate) struct Stall {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Stall {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: None,
            armed: false,
        }
    }

    /// Bytes came: the next wait starts a new `timeout`.
    pub(crate) fn progress(&mut self) {
        self.armed = false;
    }

    /// Called when the body must wait: true once it has waited `timeout` since the last
    /// progress (and `cx` is woken then otherwise).
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.armed {
            sleep.as_mut().reset(Instant::now() + timeout);
            self.armed = true;
        }
        sleep.as_mut().poll(cx).is_ready()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The HTTP/1.1 connection a response came on: driven while its body is read, and
/// returned to the pool when the body has ended cleanly.
pub(crate) struct Release {
    pub(crate) conn: Box<Http1Conn>,
    pub(crate) server: Arc<Server>,
}

impl Release {
    /// The response has ended: pool the connection if it is ready for the next request
    /// (at once, nearly always).
    pub(crate) fn finish(self) {
        if let Some(raw) = self.conn.into_raw() {
            self.server.pool.checkin(raw);
        }
    }
}

/// The response body of one upstream response.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    release: Option<Release>,
    server: Arc<Server>,
    stall: Stall,
    /// Held until the body is done: the in-flight count and the attempt's span.
    _guard: Box<dyn Send + Sync>,
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: Incoming,
        release: Option<Release>,
        server: Arc<Server>,
        read_timeout: Duration,
        guard: Box<dyn Send + Sync>,
    ) -> Self {
        Self {
            inner,
            release,
            server,
            stall: Stall::new(read_timeout),
            _guard: guard,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            // Nothing buffered: have the connection read more, then look again.
            if let Some(release) = this.release.as_mut() {
                if release.conn.drive(cx).is_ready() {
                    // Ended: the body below fails or has ended; not pooled.
                    this.release = None;
                }
                polled = Pin::new(&mut this.inner).poll_frame(cx);
            }
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall.progress();
                // hyper stops polling a body once its length is sent, or after its
                // trailers: release now.
                if this.inner.is_end_stream() || frame.is_trailers() {
                    if let Some(release) = this.release.take() {
                        release.finish();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(source))) => {
                this.release = None;
                let error = BodyError::Upstream {
                    server: this.server.label.clone(),
                    source,
                };
                tracing::warn!(upstream = %this.server.upstream, "{error}");
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                if let Some(release) = this.release.take() {
                    release.finish();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.stall.poll_expired(cx) {
                    this.release = None;
                    let error = BodyError::Stalled {
                        server: this.server.label.clone(),
                        timeout: this.stall.timeout(),
                    };
                    tracing::warn!(upstream = %this.server.upstream, "{error}: response cut");
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Read to its end but never polled past it: the connection is still good.
        if http_body::Body::is_end_stream(&self.inner) {
            if let Some(release) = self.release.take() {
                release.finish();
            }
        }
    }
}

/// How far the request body has gone upstream: the time of its last piece, and whether
/// it is complete (so `read_timeout` counts from the end of an upload, not its start).
#[derive(Default)]
pub(crate) struct Progress {
    /// [`now_ms`] when the last piece went out (or the body was wrapped).
    last: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            last: AtomicU64::new(now_ms()),
            done: AtomicBool::new(false),
        })
    }

    /// Milliseconds since the last progress.
    pub(crate) fn idle_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last.load(Ordering::Relaxed))
    }

    /// The whole body has gone out.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// The client's request body on its way upstream, recording [`Progress`].
pub(crate) struct ProgressBody {
    inner: Body,
    progress: Arc<Progress>,
}

impl ProgressBody {
    pub(crate) fn new(inner: Body, progress: Arc<Progress>) -> Self {
        Self { inner, progress }
    }
}

impl http_body::Body for ProgressBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(frame) = &polled {
            this.progress.last.store(now_ms(), Ordering::Relaxed);
            if frame.is_none() || this.inner.is_end_stream() {
                this.progress.done.store(true, Ordering::Relaxed);
            }
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
