//! Request limits checked right before the application (after the configured layers,
//! which still see and log what is refused): request line (414), header field size and
//! count (431), declared body size (413), and the method rule (400 unless
//! `limits.permit_unconventional_methods`).
//!
//! hyper enforces the whole-head size and, for HTTP/1, the header count itself; this
//! layer adds gunicorn's per-line limits and applies them to HTTP/2 as well. The HTTP/1
//! framing check refuses an unconventional method before hyper parses it; the check here
//! applies the same rule to HTTP/2.

use std::task::{Context, Poll};

use futures_util::future::{self, Either, Ready};
use http::{header, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::config::LimitsConfig;
use axum::body::Body;
use gateway_middleware::request_path::OriginalTarget;

use crate::types::error_response;

/// Adds [`RequestLimits`] to a service.
#[derive(Clone, Debug)]
pub struct RequestLimitsLayer {
    limits: LimitsConfig,
}

impl RequestLimitsLayer {
    /// Enforce `limits`.
    pub fn new(limits: LimitsConfig) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimits {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// Refuses requests over the configured limits with 413, 414 or 431.
#[derive(Clone, Debug)]
pub struct RequestLimits<S> {
    inner: S,
    limits: LimitsConfig,
}

impl<S> RequestLimits<S> {
    fn refusal<B>(&self, request: &Request<B>) -> Option<StatusCode> {
        let limits = &self.limits;
        let method = request.method().as_str().as_bytes();
        if !limits.permit_unconventional_methods
            && !crate::types::http_syntax::is_conventional_method(method)
        {
            return Some(StatusCode::BAD_REQUEST);
        }
        // "METHOD SP target SP HTTP/1.1", with the target as the client sent it.
        let target_len = match request.extensions().get::<OriginalTarget>() {
            Some(original) => original.0.as_str().len(),
            None => request
                .uri()
                .path_and_query()
                .map_or(request.uri().path().len(), |pq| pq.as_str().len()),
        };
        if request.method().as_str().len() + target_len + 10 > limits.max_request_line {
            return Some(StatusCode::URI_TOO_LONG);
        }
        let headers = request.headers();
        if headers.len() > limits.max_header_count {
            return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        if headers
            .iter()
            .any(|(name, value)| name.as_str().len() + 2 + value.len() > limits.max_header_size)
        {
            return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limits.max_body_size.0) {
            return Some(StatusCode::PAYLOAD_TOO_LARGE);
        }
        None
    }
}

impl<S, B> Service<Request<B>> for RequestLimits<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.refusal(&request) {
            Some(status) => {
                tracing::info!(
                    method = %request.method(),
                    status = status.as_u16(),
                    "request refused by [limits]"
                );
                Either::Left(future::ready(Ok(error_response(status))))
            }
            None => Either::Right(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{service_fn, ServiceExt};

    fn limited(
        limits: LimitsConfig,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
    {
        RequestLimitsLayer::new(limits).layer(service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::from("app")))
        }))
    }

    async fn status(limits: LimitsConfig, request: Request<Body>) -> StatusCode {
        limited(limits).oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn refuses_what_is_over_the_limits_and_passes_the_rest() {
        let limits = LimitsConfig {
            max_request_line: 40,
            max_header_count: 3,
            max_header_size: 32,
            max_body_size: crate::config::units::ByteSize(10),
            ..LimitsConfig::default()
        };
        let ok = Request::get("/short").body(Body::empty()).unwrap();
        assert_eq!(status(limits.clone(), ok).await, StatusCode::OK);

        let long = Request::get(format!("/{}", "a".repeat(40)))
            .body(Body::empty())
            .unwrap();
        assert_eq!(status(limits.clone(), long).await, StatusCode::URI_TOO_LONG);

        let mut many = Request::get("/").body(Body::empty()).unwrap();
        for name in ["a", "b", "c", "d"] {
            many.headers_mut().insert(name, "1".parse().unwrap());
        }
        assert_eq!(
            status(limits.clone(), many).await,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );

        let big = Request::get("/")
            .header("x-big", "v".repeat(40))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            status(limits.clone(), big).await,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );

        let declared = Request::post("/")
            .header("content-length", "11")
            .body(Body::from("01234567890"))
            .unwrap();
        let refused = limited(limits.clone()).oneshot(declared).await.unwrap();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.headers()["connection"], "close");
    }

    #[tokio::test]
    async fn the_request_line_is_measured_as_the_client_sent_it() {
        let limits = LimitsConfig {
            max_request_line: 30,
            ..LimitsConfig::default()
        };
        // Canonical "/admin" is short; the target as sent ("/%61%64%6d%69%6e...") is not.
        let mut request = Request::get("/admin").body(Body::empty()).unwrap();
        request.extensions_mut().insert(OriginalTarget(
            "/%61%64%6d%69%6e//////////".parse().unwrap(),
        ));
        assert_eq!(status(limits, request).await, StatusCode::URI_TOO_LONG);
    }
}
