//! [`MeterLayer`]: every request measured by a [`RequestMeter`], from the call until both
//! its request body and its response body are done with.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use tower::{Layer, Service};

use super::request::{MeteredRequestBody, RequestMeter};
use crate::types::ConnectionInfo;

/// Adds [`Meter`] to a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeterLayer;

impl<S> Layer<S> for MeterLayer {
    type Service = Meter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Meter { inner }
    }
}

/// Counts each request's duration, body sizes and status into this worker's metrics.
#[derive(Clone, Debug)]
pub struct Meter<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for Meter<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<MeteredBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let scheme = request
            .extensions()
            .get::<ConnectionInfo>()
            .map_or("http", |info| info.scheme);
        let meter = RequestMeter::start(request.method(), scheme, request.version());
        let request = request.map(|body| Body::new(MeteredRequestBody::new(body, meter.clone())));
        ResponseFuture {
            inner: self.inner.call(request),
            meter: Some(meter),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Meter`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        meter: Option<RequestMeter>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<MeteredBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let meter = this.meter.take().expect("polled after completion");
        meter.responded(response.status());
        Poll::Ready(Ok(response.map(|inner| MeteredBody { inner, meter })))
    }
}

/// A response body that counts its bytes into the request's meter; the request is
/// recorded once the body (and the request body) are dropped.
pub struct MeteredBody {
    inner: Body,
    meter: RequestMeter,
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.meter.sent(data.len());
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
