//! The WSGI application as a tower `Service`: the innermost layer of the pipeline.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{header, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tower::Service;

use super::environ::RequestHead;
use super::input::InputSource;
use super::pool::{Job, PythonPool};
use crate::types::error_response;
use crate::types::{ConnectionInfo, MountPrefix};

/// Bodies up to this size with a declared length are read before the application is
/// called, so a slow upload never holds a Python thread.
const PREFETCH_LIMIT: u64 = 64 << 10;

/// Hands requests to the Python pool and turns its answers into HTTP responses.
#[derive(Clone)]
pub struct WsgiService {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PythonPool,
    script_name: String,
    read_timeout: Duration,
}

impl WsgiService {
    /// A service over a started pool.
    pub fn new(pool: PythonPool, script_name: String, read_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                script_name,
                read_timeout,
            }),
        }
    }

    /// The pool behind the service (for metrics and health).
    pub fn pool(&self) -> &PythonPool {
        &self.inner.pool
    }
}

impl Service<Request<Body>> for WsgiService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.handle(request).await) })
    }
}

impl Inner {
    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let mount = request
            .extensions()
            .get::<MountPrefix>()
            .map(|mount| mount.0.clone());
        if mount.is_none() && !under_prefix(request.uri().path(), &self.script_name) {
            return error_response(StatusCode::NOT_FOUND);
        }
        let (parts, body) = request.into_parts();
        let input = match self.input_source(&parts, body).await {
            Ok(input) => input,
            Err(status) => return error_response(status),
        };
        let info = parts.extensions.get::<ConnectionInfo>().copied();
        let remote_user = parts
            .extensions
            .get::<gateway_middleware::AuthenticatedUser>()
            .map(|user| user.0.clone());
        let original_target = parts
            .extensions
            .get::<gateway_middleware::request_path::OriginalTarget>()
            .map(|original| original.0.clone());
        let head = RequestHead {
            method: parts.method,
            uri: parts.uri,
            original_target,
            mount,
            version: parts.version,
            headers: parts.headers,
            peer: info.and_then(|i| i.peer),
            local: info.and_then(|i| i.local),
            scheme: info.map_or("http", |i| i.scheme),
            remote_user,
            client_subject: parts
                .extensions
                .get::<Arc<crate::types::TlsSession>>()
                .and_then(|tls| tls.client_subject.clone()),
        };
        let (reply, response) = oneshot::channel();
        let span = crate::telemetry::tracing_enabled().then(tracing::Span::current);
        if self
            .pool
            .submit(Job {
                head,
                input,
                reply,
                span,
            })
            .is_err()
        {
            return error_response(StatusCode::SERVICE_UNAVAILABLE);
        }
        let response = response.await;
        match response {
            Ok(wsgi) => {
                let mut response = Response::new(Body::new(wsgi.body));
                *response.status_mut() = wsgi.status;
                *response.headers_mut() = wsgi.headers;
                response
            }
            // The Python thread dropped the job without answering (it panicked).
            Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// Decide how the application will read the body: not at all, from memory, or
    /// streaming from the connection.
    async fn input_source(
        &self,
        parts: &http::request::Parts,
        body: Body,
    ) -> Result<InputSource, StatusCode> {
        if body.is_end_stream() {
            return Ok(InputSource::Empty);
        }
        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let small = body
            .size_hint()
            .exact()
            .is_some_and(|len| len <= PREFETCH_LIMIT);
        if !small || expects_continue {
            return Ok(InputSource::Streaming(body));
        }
        match tokio::time::timeout(self.read_timeout, body.collect()).await {
            Ok(Ok(collected)) => Ok(InputSource::Buffered(collected.to_bytes())),
            Ok(Err(_)) => Err(StatusCode::BAD_REQUEST),
            Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
        }
    }
}

/// True when `path` is `prefix` or below it (`/api` matches `/api` and `/api/x`, not
/// `/apix`).
fn under_prefix(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
    decoded
        .strip_prefix(prefix.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}
