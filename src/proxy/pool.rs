//! The connections of one server, kept per worker (pingora's "pool keyed by peer"):
//! idle HTTP/1.1 connections, most recently used first, dropped past `idle_timeout`
//! or beyond `max_idle`; and one shared HTTP/2 connection when the server speaks it.
//!
//! An idle HTTP/1.1 connection is a bare stream ([`RawConn`]). A request without a
//! body uses it directly (`h1`); one with a body wraps it in hyper's client
//! ([`Http1Conn`]), which gives the stream back when the response has ended. Neither
//! has a task of its own: whoever waits on the connection (the request's future for
//! the response head, then the response body) drives it, as nginx's event loop handles
//! the upstream socket of the request it serves. That saves a task, a channel hand-off
//! each way and a wake-up per request. An idle connection is looked at when it is
//! checked out and by the reaper every second, which finds one the server closed (or
//! wrote to) meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::BytesMut;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};

use super::connect::Stream;

/// An HTTP/1.1 connection between two exchanges: the stream, its read buffer (empty
/// whenever it is pooled) and the buffer requests are written from.
pub(crate) struct RawConn {
    pub(crate) stream: Stream,
    pub(crate) buf: BytesMut,
    pub(crate) out: Vec<u8>,
}

impl RawConn {
    pub(crate) fn new(stream: Stream) -> Box<Self> {
        Box::new(Self {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
        })
    }

    /// True when the connection is open and the server has sent nothing since the last
    /// response: a read that must not wait finds neither an end of stream nor bytes.
    pub(crate) fn is_reusable(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }
}

/// A connection ready for a request.
pub(crate) enum Conn {
    /// HTTP/1.1 for a request without a body (`h1`); back in the pool when its
    /// response ends.
    Raw(Box<RawConn>),
    /// HTTP/1.1 in hyper's client, driven by whoever waits on it; back in the pool
    /// when its response ends.
    Http1(Box<Http1Conn>),
    /// HTTP/1.1 driven by a task of its own (an upgrade: the task hands the connection
    /// over after a 101); never pooled.
    Http1Task(http1::SendRequest<Body>),
    /// HTTP/2: shared by every request to the server.
    Http2(http2::SendRequest<Body>),
}

/// One HTTP/1.1 connection: the handle that sends requests and the state machine
/// that does the I/O, which must be polled for anything to happen.
pub(crate) struct Http1Conn {
    pub(crate) sender: http1::SendRequest<Body>,
    driver: Option<http1::Connection<TokioIo<Stream>, Body>>,
}

impl Http1Conn {
    /// Put hyper's client on a connection (no I/O happens).
    pub(crate) async fn wrap(raw: Box<RawConn>) -> Result<Box<Self>, hyper::Error> {
        let (sender, driver) = http1::Builder::new()
            // The same bound on a response head as `h1`'s.
            .max_buf_size(super::h1::MAX_HEAD)
            .handshake(TokioIo::new(raw.stream))
            .await?;
        Ok(Box::new(Self {
            sender,
            driver: Some(driver),
        }))
    }

    /// The stream back, when the connection is ready for another request and hyper
    /// holds no bytes past the last response.
    pub(crate) fn into_raw(mut self: Box<Self>) -> Option<Box<RawConn>> {
        if !self.is_reusable() {
            return None;
        }
        let parts = self.driver.take()?.into_parts();
        if !parts.read_buf.is_empty() {
            return None;
        }
        let mut raw = RawConn::new(parts.io.into_inner());
        raw.is_reusable().then_some(raw)
    }

    /// Do the connection's pending I/O (send the request, read the response into its
    /// body). Ready once the connection has ended: its state is dropped then, which
    /// fails whatever still waited on it.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        match Pin::new(driver).poll(cx) {
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!("upstream connection ended: {error}");
                }
                self.driver = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// True when the connection is open and ready for another request; drives it
    /// first, so a close or a stray byte from the server is seen.
    pub(crate) fn is_reusable(&mut self) -> bool {
        for _ in 0..2 {
            if self
                .drive(&mut Context::from_waker(Waker::noop()))
                .is_ready()
            {
                return false;
            }
            if self.sender.is_ready() {
                return true;
            }
        }
        false
    }

    /// Hand the connection to a task of its own that also completes upgrades.
    pub(crate) fn into_task(mut self, label: String) -> Option<http1::SendRequest<Body>> {
        let driver = self.driver.take()?;
        tokio::spawn(async move {
            if let Err(error) = driver.with_upgrades().await {
                tracing::debug!(server = %label, "upstream connection ended: {error}");
            }
        });
        Some(self.sender)
    }
}

struct Idle {
    conn: Box<RawConn>,
    since: Instant,
}

/// The pool of one server.
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
    http2: Mutex<Option<http2::SendRequest<Body>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(Vec::with_capacity(max_idle.min(64))),
            http2: Mutex::new(None),
            max_idle,
            idle_timeout,
        }
    }

    /// A live idle HTTP/1.1 connection, if there is one.
    pub(crate) fn checkout_http1(&self) -> Option<Box<RawConn>> {
        loop {
            let mut entry = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if entry.since.elapsed() < self.idle_timeout && entry.conn.is_reusable() {
                return Some(entry.conn);
            }
            // Closed by the server, or idle too long: dropping it closes it.
        }
    }

    /// The shared HTTP/2 connection, if it is still open.
    pub(crate) fn checkout_http2(&self) -> Option<http2::SendRequest<Body>> {
        let mut shared = self.http2.lock().unwrap_or_else(|e| e.into_inner());
        match shared.as_ref() {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                *shared = None;
                None
            }
            None => None,
        }
    }

    /// Share a new HTTP/2 connection.
    pub(crate) fn share_http2(&self, sender: http2::SendRequest<Body>) {
        *self.http2.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    }

    /// Keep a connection whose response has ended, if it is ready for the next.
    pub(crate) fn checkin(&self, mut conn: Box<RawConn>) {
        if self.max_idle == 0 || !conn.is_reusable() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            // The oldest goes: the most recently used are the warmest.
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Close connections idle past `idle_timeout` or closed by the server (called every
    /// second by the upstream's background task, so the pool holds no dead sockets).
    pub(crate) fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|entry| {
            entry.since.elapsed() < self.idle_timeout && entry.conn.is_reusable()
        });
    }
}
