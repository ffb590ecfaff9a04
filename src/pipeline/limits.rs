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
        // "METHOD SP target SP HTTP/1.1"
        let target_len = request
            .uri()
            .path_and_query()
            .map_or(request.uri().path().len(), |pq| pq.as_str().len());
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
