//! The transport wrapper every connection is served through.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framing::FramingCheck;

/// What the connection task needs to know to close idle keep-alive connections.
#[derive(Debug)]
pub struct ConnectionActivity {
    started: Instant,
    /// Milliseconds since `started` of the last read or finished response.
    last_active_ms: AtomicU64,
    /// Requests whose response has not finished.
    in_flight: AtomicUsize,
}

impl ConnectionActivity {
    /// Fresh activity for a new connection.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Record activity now.
    pub fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// A request has started.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A response has been sent completely (or abandoned).
    pub fn request_finished(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection becomes idle past `timeout` if nothing happens before:
    /// `None` while a request is in flight.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        Some(self.started + last + timeout)
    }
}

/// A socket wrapped with the HTTP/1 framing check and activity tracking.
pub struct GuardedIo<T> {
    inner: T,
    framing: FramingCheck,
    activity: Arc<ConnectionActivity>,
}

impl<T> GuardedIo<T> {
    /// Wrap `inner`, recording reads in `activity`.
    pub fn new(inner: T, activity: Arc<ConnectionActivity>) -> Self {
        Self {
            inner,
            framing: FramingCheck::default(),
            activity,
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
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let fresh = &mut buf.filled_mut()[before..];
        if !fresh.is_empty() {
            this.activity.touch();
            if this.framing.inspect(fresh) {
                tracing::debug!("refusing a request with ambiguous or lenient framing");
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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
