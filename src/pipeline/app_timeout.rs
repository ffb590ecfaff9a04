//! `server.queue_timeout` and `server.timeout`, around the application.
//!
//! Each request gets a [`JobTicket`] in its extensions, which the WSGI service carries
//! into the Python pool. The layer follows it:
//!
//! 1. while the body is read (request buffering, bounded by `server.read_timeout`
//!    below): no bound here;
//! 2. while the job waits for a Python thread: `queue_timeout`. Past it the job is
//!    abandoned (the pool drops it unstarted) and the client gets 503 with
//!    `Retry-After`; the worker is fine, it is only busy;
//! 3. from the moment a Python thread picks the job until the response head:
//!    `timeout`. Past it the client gets 504 and the worker is told (it recycles
//!    itself, since a Python thread cannot be interrupted; gunicorn's `timeout`).
//!
//! A request that gets 503 never runs; one that gets 504 ran too long. A service below
//! that does not carry the ticket to the pool is never timed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::types::error_response;
use crate::wsgi::ticket::{JobTicket, Phase};

/// Called with the request line of a request that ran past the timeout.
pub type OnTimeout = Arc<dyn Fn(String) + Send + Sync>;

/// What a client that waited too long for a Python thread is told to wait before
/// retrying, in seconds.
const RETRY_AFTER_SECONDS: u32 = 1;

/// Adds [`AppTimeout`] to a service.
#[derive(Clone)]
pub struct AppTimeoutLayer {
    limits: Arc<Limits>,
}

struct Limits {
    queue: Duration,
    run: Duration,
    on_timeout: OnTimeout,
}

impl AppTimeoutLayer {
    /// Answer 503 after `queue` without a Python thread and 504 after `run` on one
    /// (zero: never), calling `on_timeout` for the latter.
    pub fn new(queue: Duration, run: Duration, on_timeout: OnTimeout) -> Self {
        Self {
            limits: Arc::new(Limits {
                queue,
                run,
                on_timeout,
            }),
        }
    }
}

impl<S> Layer<S> for AppTimeoutLayer {
    type Service = AppTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AppTimeout {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// Bounds the wait for a Python thread and the time from there to the response head.
#[derive(Clone)]
pub struct AppTimeout<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> Service<Request<Body>> for AppTimeout<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let limits = self.limits.clone();
        if limits.queue.is_zero() && limits.run.is_zero() {
            return Box::pin(self.inner.call(request));
        }
        let ticket = JobTicket::new();
        request.extensions_mut().insert(ticket.clone());
        // Clones are reference counts; the line is only formatted on a timeout.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let inner = self.inner.call(request);
        Box::pin(async move {
            tokio::pin!(inner);
            // 1. The body is read: bounded below by server.read_timeout.
            tokio::select! {
                biased;
                response = &mut inner => return response,
                _ = ticket.left_reading() => {}
            }
            // 2. Waiting for a Python thread.
            let queue_bound = async {
                if limits.queue.is_zero() {
                    std::future::pending().await
                } else {
                    tokio::time::sleep(limits.queue).await
                }
            };
            tokio::select! {
                biased;
                response = &mut inner => return response,
                _ = ticket.left_queue() => {}
                () = queue_bound => {
                    // Unless a thread picked it at this very moment, it never runs.
                    if ticket.abandon() == Phase::Queued {
                        tracing::warn!(
                            request = %format!("{method} {uri}"),
                            "no Python thread free within server.queue_timeout ({:?}): 503",
                            limits.queue
                        );
                        return Ok(queue_full());
                    }
                }
            }
            // 3. Running on a Python thread, until the response head.
            if limits.run.is_zero() {
                return inner.await;
            }
            tokio::select! {
                biased;
                response = &mut inner => response,
                () = tokio::time::sleep(limits.run) => {
                    let line = format!("{method} {uri}");
                    tracing::error!(
                        request = %line,
                        "no response after server.timeout ({:?}): 504; this worker will be \
                         replaced, since a Python thread cannot be interrupted",
                        limits.run
                    );
                    (limits.on_timeout)(line);
                    Ok(error_response(StatusCode::GATEWAY_TIMEOUT))
                }
            }
        })
    }
}

/// 503 with `Retry-After`: the worker is busy, not broken.
fn queue_full() -> Response<Body> {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}
