//! The WSGI application as a tower `Service`: the innermost layer of the pipeline.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tokio::sync::oneshot;
use tower::Service;

use super::buffering::{self, BufferPolicy};
use super::environ::RequestHead;
use super::pool::{Job, PythonPool};
use super::ticket::{JobTicket, Phase};
use crate::types::error_response;
use crate::types::{ConnectionInfo, MountPrefix};

/// Hands requests to the Python pool and turns its answers into HTTP responses.
///
/// The body is read first as `limits.buffer_body` says ([`buffering`]). The request's
/// [`JobTicket`] (from its extensions, where the pipeline's timeout layer puts one)
/// travels with the job; if this service's future is dropped before a Python thread
/// picked the job (the client went away, or the request was answered 503), the job is
/// abandoned and never runs.
#[derive(Clone)]
pub struct WsgiService {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PythonPool,
    script_name: String,
    buffering: BufferPolicy,
}

impl WsgiService {
    /// A service over a started pool.
    pub fn new(pool: PythonPool, script_name: String, buffering: BufferPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                script_name,
                buffering,
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
        let (mut parts, body) = request.into_parts();
        let ticket = parts.extensions.remove::<JobTicket>().unwrap_or_default();
        let ticket = AbandonOnDrop(ticket);
        let input = match buffering::input_source(self.buffering, &parts.headers, body).await {
            Ok(input) => input,
            Err(status) => {
                tracing::info!(
                    method = %parts.method,
                    uri = %parts.uri,
                    "request body not received within server.read_timeout: {}",
                    status.as_u16()
                );
                return error_response(status);
            }
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
        ticket.0.queued();
        if self
            .pool
            .submit(Job {
                head,
                input,
                reply,
                span,
                ticket: ticket.0.clone(),
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
                if let Some(upstream) = wsgi.upstream {
                    response.extensions_mut().insert(upstream);
                }
                response
            }
            // The Python thread dropped the job without answering (it panicked).
            Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// Abandons the request's job when the response future is dropped before a Python
/// thread picked it: the client has gone (or was answered), so it must not run.
struct AbandonOnDrop(JobTicket);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if self.0.abandon() == Phase::Queued {
            tracing::debug!(
                "the client went away before a Python thread was free: the request will not run"
            );
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
