//! The native actions of a route that are not a service of their own elsewhere:
//! `redirect` and `respond` (`static` is the static files layer's terminal service,
//! `app` a WSGI application).

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::{ready, Ready};
use gateway_middleware::request_path::path_under;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower::Service;

use crate::config::{RedirectOptions, RespondAction};

/// `redirect`: answers with a `Location` built from the target and the request.
#[derive(Clone, Debug)]
pub(super) struct Redirect {
    to: String,
    status: StatusCode,
    keep_path: bool,
    keep_query: bool,
    /// The route's canonical prefix, cut from the path when it is kept.
    prefix: String,
}

impl Redirect {
    /// A redirect for a route mounted at `prefix`.
    pub(super) fn new(options: &RedirectOptions, prefix: &str) -> Result<Self, String> {
        let status = StatusCode::from_u16(options.status).map_err(|e| e.to_string())?;
        HeaderValue::try_from(options.to.as_str())
            .map_err(|_| format!("{:?} cannot be a Location", options.to))?;
        Ok(Self {
            to: options.to.clone(),
            status,
            keep_path: options.keep_path,
            keep_query: options.keep_query,
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    fn location(&self, request: &Request<Body>) -> String {
        let mut location = self.to.clone();
        if self.keep_path {
            let path = request.uri().path();
            let rest = path_under(path, &self.prefix).unwrap_or("");
            if location.ends_with('/') && rest.starts_with('/') {
                location.pop();
            }
            location.push_str(rest);
        }
        if self.keep_query {
            if let Some(query) = request.uri().query() {
                location.push(if location.contains('?') { '&' } else { '?' });
                location.push_str(query);
            }
        }
        location
    }
}

impl Service<Request<Body>> for Redirect {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let location = self.location(&request);
        let mut response = Response::new(Body::from(format!("Redirecting to {location}\n")));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(value) = HeaderValue::try_from(location) {
            headers.insert(header::LOCATION, value);
        }
        ready(Ok(response))
    }
}

/// `respond`: the same status, headers and body for every request.
#[derive(Clone, Debug)]
pub(super) struct Respond {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Respond {
    /// A fixed response.
    pub(super) fn new(action: &RespondAction) -> Result<Self, String> {
        let status = StatusCode::from_u16(action.status).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        for (name, value) in &action.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("headers: {name:?} is not a header name"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("headers: {value:?} is not a header value"))?;
            headers.insert(name, value);
        }
        Ok(Self {
            status,
            headers,
            body: bytes::Bytes::from(action.body.clone()),
        })
    }
}

impl Service<Request<Body>> for Respond {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        ready(Ok(response))
    }
}
