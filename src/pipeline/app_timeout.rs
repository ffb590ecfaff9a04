//! `server.timeout`: a request whose response has not started after the limit gets
//! 504, and the worker is told (it recycles itself, since a Python thread cannot be
//! interrupted; gunicorn's `timeout`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::types::error_response;

/// Called with the request line of a request that ran past the timeout.
pub type OnTimeout = Arc<dyn Fn(String) + Send + Sync>;

/// Adds [`AppTimeout`] to a service.
#[derive(Clone)]
pub struct AppTimeoutLayer {
    limit: Duration,
    on_timeout: OnTimeout,
}

impl AppTimeoutLayer {
    /// Answer 504 after `limit` (zero: never) and call `on_timeout`.
    pub fn new(limit: Duration, on_timeout: OnTimeout) -> Self {
        Self { limit, on_timeout }
    }
}

impl<S> Layer<S> for AppTimeoutLayer {
    type Service = AppTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AppTimeout {
            inner,
            layer: self.clone(),
        }
    }
}

/// Bounds the time until the response head.
#[derive(Clone)]
pub struct AppTimeout<S> {
    inner: S,
    layer: AppTimeoutLayer,
}

impl<S> Service<Request<Body>> for AppTimeout<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let limit = self.layer.limit;
        let deadline = (!limit.is_zero()).then(|| Deadline {
            // Clones are reference counts; the line is only formatted on a timeout.
            method: request.method().clone(),
            uri: request.uri().clone(),
            limit,
            on_timeout: self.layer.on_timeout.clone(),
        });
        ResponseFuture {
            sleep: deadline.as_ref().map(|_| tokio::time::sleep(limit)),
            inner: self.inner.call(request),
            deadline,
        }
    }
}

/// What a timed request needs when it times out.
struct Deadline {
    method: http::Method,
    uri: http::Uri,
    limit: Duration,
    on_timeout: OnTimeout,
}

pin_project_lite::pin_project! {
    /// The response future of [`AppTimeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Option<Deadline>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(output);
        }
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        std::task::ready!(sleep.poll(cx));
        let deadline = this.deadline.take().expect("polled after completion");
        let line = format!("{} {}", deadline.method, deadline.uri);
        tracing::error!(
            request = %line,
            "no response after server.timeout ({:?}): 504; this worker will be \
             replaced, since a Python thread cannot be interrupted",
            deadline.limit
        );
        (deadline.on_timeout)(line);
        Poll::Ready(Ok(error_response(StatusCode::GATEWAY_TIMEOUT)))
    }
}
