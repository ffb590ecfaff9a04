//! Set, append or remove request and response headers.
//!
//! ```
//! use gateway_middleware::headers::{HeaderOp, HeadersLayer};
//! let layer = HeadersLayer::new()
//!     .response(HeaderOp::set("strict-transport-security", "max-age=63072000").unwrap())
//!     .response(HeaderOp::set("x-content-type-options", "nosniff").unwrap())
//!     .request(HeaderOp::remove("x-debug").unwrap());
//! # let _ = layer;
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::Body;

/// One change to a header map.
#[derive(Clone, Debug)]
pub enum HeaderOp {
    /// Replace every value of the header with this one.
    Set(HeaderName, HeaderValue),
    /// Add a value, keeping existing ones.
    Append(HeaderName, HeaderValue),
    /// Remove the header.
    Remove(HeaderName),
}

/// Why a header operation could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HeaderOpError {
    /// Not a valid header name.
    #[error("invalid header name {0:?}")]
    Name(String),
    /// Not a valid header value (control characters).
    #[error("invalid value for header {0:?}")]
    Value(String),
}

impl HeaderOp {
    fn parts(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeaderOpError> {
        let header = HeaderName::try_from(name).map_err(|_| HeaderOpError::Name(name.into()))?;
        let value = HeaderValue::try_from(value).map_err(|_| HeaderOpError::Value(name.into()))?;
        Ok((header, value))
    }

    /// `name: value`, replacing existing values.
    pub fn set(name: &str, value: &str) -> Result<Self, HeaderOpError> {
        let (name, value) = Self::parts(name, value)?;
        Ok(HeaderOp::Set(name, value))
    }

    /// `name: value`, in addition to existing values.
    pub fn append(name: &str, value: &str) -> Result<Self, HeaderOpError> {
        let (name, value) = Self::parts(name, value)?;
        Ok(HeaderOp::Append(name, value))
    }

    /// Remove `name`.
    pub fn remove(name: &str) -> Result<Self, HeaderOpError> {
        let name = HeaderName::try_from(name).map_err(|_| HeaderOpError::Name(name.into()))?;
        Ok(HeaderOp::Remove(name))
    }

    fn apply(&self, headers: &mut HeaderMap) {
        match self {
            HeaderOp::Set(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            HeaderOp::Append(name, value) => {
                headers.append(name.clone(), value.clone());
            }
            HeaderOp::Remove(name) => {
                headers.remove(name);
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Ops {
    request: Vec<HeaderOp>,
    response: Vec<HeaderOp>,
}

/// Applies header operations to requests on the way in and responses on the way out.
#[derive(Clone, Debug, Default)]
pub struct HeadersLayer {
    ops: Arc<Ops>,
}

impl HeadersLayer {
    /// No operations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an operation on requests.
    pub fn request(mut self, op: HeaderOp) -> Self {
        Arc::make_mut(&mut self.ops).request.push(op);
        self
    }

    /// Add an operation on responses.
    pub fn response(mut self, op: HeaderOp) -> Self {
        Arc::make_mut(&mut self.ops).response.push(op);
        self
    }
}

impl<S> Layer<S> for HeadersLayer {
    type Service = Headers<S>;

    fn layer(&self, inner: S) -> Headers<S> {
        Headers {
            inner,
            ops: self.ops.clone(),
        }
    }
}

/// The service made by [`HeadersLayer`].
#[derive(Clone, Debug)]
pub struct Headers<S> {
    inner: S,
    ops: Arc<Ops>,
}

impl<S> Service<Request<Body>> for Headers<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        for op in &self.ops.request {
            op.apply(request.headers_mut());
        }
        ResponseFuture {
            inner: self.inner.call(request),
            ops: self.ops.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Headers`]: applies the response operations.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        ops: Arc<Ops>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        for op in &this.ops.response {
            op.apply(response.headers_mut());
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn changes_requests_and_responses() {
        let service = HeadersLayer::new()
            .request(HeaderOp::set("x-in", "1").unwrap())
            .request(HeaderOp::remove("x-drop").unwrap())
            .response(HeaderOp::append("x-out", "b").unwrap())
            .response(HeaderOp::set("server", "gw").unwrap())
            .layer(tower::service_fn(|request: Request<Body>| async move {
                assert_eq!(request.headers()["x-in"], "1");
                assert!(request.headers().get("x-drop").is_none());
                let mut response = Response::new(Body::empty());
                response
                    .headers_mut()
                    .insert("x-out", HeaderValue::from_static("a"));
                response
                    .headers_mut()
                    .insert("server", HeaderValue::from_static("app"));
                Ok::<_, std::convert::Infallible>(response)
            }));
        let request = Request::builder()
            .header("x-drop", "y")
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let out: Vec<_> = response.headers().get_all("x-out").iter().collect();
        assert_eq!(out, ["a", "b"]);
        assert_eq!(response.headers()["server"], "gw");
    }
}
