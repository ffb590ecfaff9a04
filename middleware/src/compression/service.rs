//! The compression service: negotiates per request, rewrites the response head, and
//! wraps the body in a [`CompressedBody`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use http_body::Body as _;
use tower::Service;

use super::body::CompressedBody;
use super::negotiate::{compressible, negotiate};
use super::{CompressionLayer, CompressionOffer, Encoding, Levels};
use crate::Body;

/// The service made by [`CompressionLayer`].
#[derive(Clone, Debug)]
pub struct Compression<S> {
    pub(super) inner: S,
    pub(super) config: CompressionLayer,
}

impl<S> Service<Request<Body>> for Compression<S>
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
        let encoding = request
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .and_then(|accept| negotiate(accept, &self.config.encodings));
        if let Some(encoding) = encoding {
            // A layer below holding encoded variants (static files) may answer with one.
            request.extensions_mut().insert(CompressionOffer {
                encoding,
                min_size: self.config.min_size,
            });
        }
        let plan = Plan {
            encoding,
            head: request.method() == Method::HEAD,
            min_size: self.config.min_size,
            levels: self.config.levels,
        };
        ResponseFuture {
            inner: self.inner.call(request),
            plan: Some(plan),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Compression`]: applies the negotiated coding to the
    /// response once its head is ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        plan: Option<Plan>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = futures_util::ready!(this.inner.poll(cx))?;
        let plan = this.plan.take().expect("polled after completion");
        Poll::Ready(Ok(plan.apply(response)))
    }
}

/// What was decided from the request.
struct Plan {
    /// The coding the client accepts best, if any.
    encoding: Option<Encoding>,
    /// A HEAD request: the response gets the head a GET would get, and no body.
    head: bool,
    min_size: u64,
    levels: Levels,
}

impl Plan {
    fn apply(self, response: Response<Body>) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        if !compressible(parts.status, &parts.headers) {
            return Response::from_parts(parts, body);
        }
        append_vary(&mut parts.headers);
        let size = uncompressed_size(&parts.headers, &body, self.head);
        let too_small = size.is_some_and(|n| n < self.min_size);
        let Some(encoding) = self.encoding.filter(|_| !too_small) else {
            return Response::from_parts(parts, body);
        };
        mark_encoded(&mut parts.headers, encoding);
        if self.head {
            // RFC 9110 section 9.3.2: the same head as GET, without the body.
            return Response::from_parts(parts, Body::empty());
        }
        let body = CompressedBody::new(body, encoding, self.levels, size);
        Response::from_parts(parts, Body::new(body))
    }
}

/// The body's size before compression, when it is known: its exact size hint, else
/// its Content-Length. A HEAD response's body is empty, so only its Content-Length
/// (the length GET would have) says how large the body would be.
fn uncompressed_size(headers: &HeaderMap, body: &Body, head: bool) -> Option<u64> {
    let declared = || {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    if head && body.is_end_stream() {
        return declared();
    }
    body.size_hint().exact().or_else(declared)
}

/// The head of a response whose body is compressed with `encoding`.
fn mark_encoded(headers: &mut HeaderMap, encoding: Encoding) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    if let Some(etag) = headers.get(header::ETAG) {
        // A compressed variant is no longer byte-identical to the strong ETag.
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(header::ETAG, weak);
            }
        }
    }
}

fn append_vary(headers: &mut HeaderMap) {
    let already = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
        })
    });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, ServiceExt};

    fn page(request: Request<Body>) -> Response<Body> {
        let text = "compress me ".repeat(100);
        let mut response = Response::new(if request.method() == Method::HEAD {
            Body::empty()
        } else {
            Body::from(text.clone())
        });
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        response
    }

    async fn call(method: Method) -> Response<Body> {
        let service =
            CompressionLayer::new().layer(tower::service_fn(|request: Request<Body>| async move {
                Ok::<_, std::convert::Infallible>(page(request))
            }));
        let request = Request::builder()
            .method(method)
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap();
        service.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn head_gets_the_head_get_gets_and_no_body() {
        use http_body_util::BodyExt;
        let get = call(Method::GET).await;
        let head = call(Method::HEAD).await;
        assert_eq!(get.headers(), head.headers());
        assert_eq!(head.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(head.headers()[header::ETAG], "W/\"v1\"");
        assert!(!head.headers().contains_key(header::CONTENT_LENGTH));
        assert!(head
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
    }
}
