//! Request buffering: read a request body on the runtime before the application is
//! called, so no Python thread waits on a slow client (nginx's
//! `proxy_request_buffering`).
//!
//! - No body: nothing to read.
//! - `Expect: 100-continue`, `limits.buffer_body = 0`, or a declared length over
//!   `limits.buffer_body`: the body streams to the application as it reads.
//! - Otherwise (a declared length up to the limit, or a chunked body) the body is read
//!   until it ends or passes the limit; the whole read must end within
//!   `server.read_timeout`, or the client gets 408 without the application being called.
//!   A chunked body that passes the limit streams on from what was read.
//!
//! - Bodies read ahead share one budget per worker (`limits.buffer_memory`); a body
//!   that finds it used up streams on from what was read, like one over the limit.
//!   Bytes read ahead count against it until the application is done with them.
//!
//! A body that turns out malformed, cut short or over `limits.max_body_size` while it is
//! read here still reaches the application, as what arrived followed by the failure, so
//! the application sees the same `wsgi.input` error it would see while streaming (and
//! may answer itself; otherwise 400 or 413).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;

use super::input::{error_chain, BodyFault, InputSource};

/// How request bodies are read before the application is called.
#[derive(Clone, Copy, Debug)]
pub struct BufferPolicy {
    /// Bodies up to this size are read whole first (`limits.buffer_body`); 0: none.
    pub buffer_body: u64,
    /// Most bytes all bodies being read ahead may hold in this process
    /// (`limits.buffer_memory`); 0: none is read ahead.
    pub buffer_memory: u64,
    /// Largest body the application may read (`limits.max_body_size`).
    pub max_body_size: u64,
    /// Bound on the whole read (`server.read_timeout`).
    pub read_timeout: Duration,
}

/// Read what `policy` says of `body` and say how the application will get the rest.
/// Fails with 408 only: a body that did not arrive in time.
pub async fn input_source(
    policy: BufferPolicy,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<InputSource, StatusCode> {
    if body.is_end_stream() {
        return Ok(InputSource::Empty);
    }
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared_over_limit = body
        .size_hint()
        .exact()
        .is_some_and(|len| len > policy.buffer_body);
    if expects_continue
        || policy.buffer_body == 0
        || policy.buffer_memory == 0
        || declared_over_limit
    {
        return Ok(InputSource::Streaming {
            read_ahead: Bytes::new(),
            body,
        });
    }
    let read = tokio::time::timeout(policy.read_timeout, read_ahead(&policy, &mut body)).await;
    match read {
        Err(_elapsed) => Err(StatusCode::REQUEST_TIMEOUT),
        Ok(ReadAhead::Whole(data)) => Ok(InputSource::Buffered { data, fault: None }),
        Ok(ReadAhead::Failed(data, fault)) => Ok(InputSource::Buffered {
            data,
            fault: Some(fault),
        }),
        Ok(ReadAhead::Partial(read_ahead)) => Ok(InputSource::Streaming { read_ahead, body }),
    }
}

/// What [`read_ahead`] found.
enum ReadAhead {
    /// The whole body.
    Whole(Bytes),
    /// The first part of a body over the limit; the rest is still in the body.
    Partial(Bytes),
    /// The body failed after these bytes.
    Failed(Bytes, BodyFault),
}

/// Read `body` until it ends, passes `policy.buffer_body`, finds the worker's
/// `policy.buffer_memory` used up, or fails.
async fn read_ahead(policy: &BufferPolicy, body: &mut Body) -> ReadAhead {
    let mut chunks = Chunks::default();
    let mut held = Reservation::default();
    loop {
        match body.frame().await {
            None => return ReadAhead::Whole(held.attach(chunks.into_bytes())),
            Some(Err(error)) => {
                let reason = error_chain(&error);
                let data = held.attach(chunks.into_bytes());
                return ReadAhead::Failed(data, BodyFault::Malformed { reason });
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: ignored, as while streaming
                };
                let in_use = held.add(data.len() as u64);
                chunks.push(data);
                if chunks.len > policy.max_body_size {
                    let limit = policy.max_body_size;
                    return ReadAhead::Failed(Bytes::new(), BodyFault::TooLarge { limit });
                }
                if chunks.len > policy.buffer_body {
                    return ReadAhead::Partial(held.attach(chunks.into_bytes()));
                }
                if in_use > policy.buffer_memory {
                    warn_budget_used_up(policy.buffer_memory);
                    return ReadAhead::Partial(held.attach(chunks.into_bytes()));
                }
            }
        }
    }
}

/// Bytes held by bodies read ahead in this process: one budget for every app a worker
/// serves.
static READ_AHEAD_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes counted in [`READ_AHEAD_BYTES`], given back when dropped.
#[derive(Default)]
struct Reservation(u64);

impl Reservation {
    /// Count `len` more bytes; the process's total after it.
    fn add(&mut self, len: u64) -> u64 {
        self.0 += len;
        READ_AHEAD_BYTES.fetch_add(len, Ordering::Relaxed) + len
    }

    /// `data`, which keeps the bytes counted until its last clone is dropped (when
    /// the application is done with the body).
    fn attach(self, data: Bytes) -> Bytes {
        if self.0 == 0 {
            return data;
        }
        Bytes::from_owner(Counted {
            data,
            _reservation: self,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        READ_AHEAD_BYTES.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Body bytes and the reservation that counts them.
struct Counted {
    data: Bytes,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Say (at most every ten seconds) that bodies stream because the budget is used up.
fn warn_budget_used_up(budget: u64) {
    static LAST_WARNED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNED.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST_WARNED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "request bodies read ahead hold limits.buffer_memory ({budget} bytes) in this \
             worker: further bodies stream to the application as they arrive, under \
             limits.min_body_rate"
        );
    }
}

/// Body pieces, joined only if there is more than one.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
    len: u64,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
        self.len += data.len() as u64;
        match (&mut self.first, &mut self.rest) {
            (None, _) => self.first = Some(data),
            (Some(first), None) => {
                let mut joined = BytesMut::with_capacity(first.len() + data.len());
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                self.rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
    }

    fn into_bytes(self) -> Bytes {
        match (self.first, self.rest) {
            (_, Some(joined)) => joined.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}
