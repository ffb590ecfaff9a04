//! The connections of one server, kept per worker (pingora's "pool keyed by peer"):
//! idle HTTP/1.1 connections, most recently used first, dropped past `idle_timeout`
//! or beyond `max_idle`; and one shared HTTP/2 connection when the server speaks it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::client::conn::{http1, http2};

/// A connection ready for a request.
pub(crate) enum Conn {
    /// HTTP/1.1: one request at a time; back in the pool when its response ends.
    Http1(http1::SendRequest<Body>),
    /// HTTP/2: shared by every request to the server.
    Http2(http2::SendRequest<Body>),
}

struct Idle {
    sender: http1::SendRequest<Body>,
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
    pub(crate) fn checkout_http1(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < self.idle_timeout && entry.sender.is_ready() {
                return Some(entry.sender);
            }
            // Closed by the server, or idle too long: dropping it closes it.
        }
        None
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

    /// Keep a connection whose response has ended (it must be ready for the next).
    pub(crate) fn checkin(&self, sender: http1::SendRequest<Body>) {
        if self.max_idle == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            // The oldest goes: the most recently used are the warmest.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Close connections idle past `idle_timeout` (called now and then by the upstream's
    /// background task, so an idle pool does not hold sockets open forever).
    pub(crate) fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|entry| entry.since.elapsed() < self.idle_timeout && !entry.sender.is_closed());
    }
}
