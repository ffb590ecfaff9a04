//! The transport wrapper every connection is served through.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framing::{FramingCheck, FramingRules};

/// What the connection task watches to close idle and slow connections. The hot path
/// only bumps counters; the connection task samples them about once a second, so no
/// clock is read and no timer is reset per request.
#[derive(Debug, Default)]
pub(super) struct ConnectionActivity {
    /// Incremented on every read and every finished response.
    events: AtomicU64,
    /// Requests whose response has not finished.
    in_flight: AtomicUsize,
    /// Incremented each time a new request head starts arriving.
    heads_started: AtomicU64,
    /// True while a request head is partly received.
    head_in_progress: AtomicBool,
    /// The connection speaks HTTP/2.
    http2: AtomicBool,
    /// A 101 response switched the connection to another protocol: its bytes are no
    /// longer HTTP/1 and are not inspected.
    upgraded: AtomicBool,
    /// The last write found the socket's send buffer full (the client is not reading).
    write_blocked: AtomicBool,
    /// Incremented each time a write goes through after a blocked one: progress.
    writes_unblocked: AtomicU64,
    /// The socket, kept for a lingering close when a request body is left unread.
    pub(super) socket: super::linger::SocketKeeper,
}

/// A sample of [`ConnectionActivity`], compared between ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ActivitySample {
    events: u64,
    in_flight: usize,
    head: Option<u64>,
    /// `Some(progress count)` while writes are blocked on the client.
    blocked_write: Option<u64>,
}

impl ActivitySample {
    /// The socket's send buffer was full at the last write: the client is not taking
    /// response bytes.
    pub(super) fn write_is_blocked(&self) -> bool {
        self.blocked_write.is_some()
    }

    /// Writes have been blocked since `earlier` was taken, without any going through.
    pub(super) fn same_blocked_write(&self, earlier: &ActivitySample) -> bool {
        self.blocked_write.is_some() && self.blocked_write == earlier.blocked_write
    }

    /// No request in flight and no partial head: the connection waits for a request.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.head.is_none()
    }

    /// Part of a request head has arrived, not all of it.
    pub(super) fn head_is_partial(&self) -> bool {
        self.head.is_some()
    }

    /// The same request head has been arriving since `earlier` was taken.
    pub(super) fn same_partial_head(&self, earlier: &ActivitySample) -> bool {
        self.head.is_some() && self.head == earlier.head
    }

    /// Nothing happened between `earlier` and this sample.
    pub(super) fn unchanged_since(&self, earlier: &ActivitySample) -> bool {
        self.events == earlier.events
    }
}

impl ConnectionActivity {
    /// Fresh activity for a new connection.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self, head_in_progress: bool) {
        self.events.fetch_add(1, Ordering::Relaxed);
        if head_in_progress != self.head_in_progress.load(Ordering::Relaxed) {
            if head_in_progress {
                self.heads_started.fetch_add(1, Ordering::Relaxed);
            }
            self.head_in_progress
                .store(head_in_progress, Ordering::Relaxed);
        }
    }

    /// Record that the connection speaks HTTP/2.
    pub(super) fn saw_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// The connection switches protocols after the current response (a 101).
    pub(super) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// A 101 switched the connection to another protocol.
    pub(super) fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Relaxed)
    }

    /// True once an HTTP/2 request was seen (or the preface).
    pub(super) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// A request has started.
    pub(super) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A response has been sent completely (or abandoned).
    pub(super) fn request_finished(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current state, for comparison with a later sample.
    pub(super) fn sample(&self) -> ActivitySample {
        let head = self
            .head_in_progress
            .load(Ordering::Relaxed)
            .then(|| self.heads_started.load(Ordering::Relaxed));
        let blocked_write = self
            .write_blocked
            .load(Ordering::Relaxed)
            .then(|| self.writes_unblocked.load(Ordering::Relaxed));
        ActivitySample {
            events: self.events.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            head,
            blocked_write,
        }
    }

    /// Record how a write turned out: blocked (Pending), or through after a block.
    /// One relaxed load per write on the hot path.
    fn wrote<T>(&self, polled: &Poll<io::Result<T>>) {
        match polled {
            Poll::Pending => self.write_blocked.store(true, Ordering::Relaxed),
            Poll::Ready(_) => {
                if self.write_blocked.load(Ordering::Relaxed) {
                    self.write_blocked.store(false, Ordering::Relaxed);
                    self.writes_unblocked.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// After a framing violation: what hyper reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Reading normally.
    None,
    /// The poisoned head still needs its terminator.
    Terminate,
    /// Everything is withheld; hyper sees end of stream.
    Closed,
}

/// A socket wrapped with the HTTP/1 framing check and activity tracking.
pub(super) struct GuardedIo<T> {
    inner: T,
    framing: FramingCheck,
    activity: Arc<ConnectionActivity>,
    refusal: Refusal,
}

impl<T> GuardedIo<T> {
    /// Wrap `inner`, checking its HTTP/1 framing under `rules` and recording reads in
    /// `activity`.
    pub(super) fn new(inner: T, activity: Arc<ConnectionActivity>, rules: FramingRules) -> Self {
        Self {
            inner,
            framing: FramingCheck::new(rules),
            activity,
            refusal: Refusal::None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.refusal {
            Refusal::None => {}
            Refusal::Terminate => {
                // End the poisoned head so hyper parses it now and answers 400.
                let terminator = b"\r\n\r\n";
                if buf.remaining() >= terminator.len() {
                    buf.put_slice(terminator);
                    this.refusal = Refusal::Closed;
                }
                return Poll::Ready(Ok(()));
            }
            Refusal::Closed => return Poll::Ready(Ok(())),
        }
        if this.activity.upgraded.load(Ordering::Relaxed) {
            // WebSocket (or other) frames after a 101: not HTTP/1 any more.
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let fresh = &mut buf.filled_mut()[before..];
        if !fresh.is_empty() {
            if let Some(refused) = this.framing.inspect(fresh) {
                tracing::info!(
                    "refusing a malformed HTTP/1 request ({}): 400",
                    refused.violation
                );
                buf.set_filled(before + refused.at + 1);
                this.refusal = Refusal::Terminate;
            }
            this.activity.read(this.framing.head_in_progress());
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
