//! The router: `[[route]]`s in order, the first whose conditions all hold takes the
//! request to its action; none: the fallback (the default app, or 404).
//!
//! Conditions are checked on the canonical path (see `gateway_middleware::request_path`),
//! so no encoding trick reaches a route without passing its middleware. A path prefix
//! matches at a segment boundary (`/tools` takes `/tools`, `/tools/x` and `/tools;x`,
//! never `/toolsX`). To stay cheap with many routes, candidates are indexed by the first
//! segment of their prefix: a request is checked only against the routes that could
//! take it, in their configured order.
//!
//! (Not axum's `Router`: matchit picks the most specific route, not the first in the
//! file, and knows neither hosts, method lists, `;` boundaries nor mount prefixes.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use futures_util::future::Either;
use gateway_middleware::request_path::path_under;
use http::{header, Method, Request, Response};
use tower::{Service, ServiceExt};

use crate::config::{split_port, HostPattern};
use crate::types::{GatewayService, MountPrefix};

/// The conditions of one route; unset ones always hold.
#[derive(Clone, Debug, Default)]
pub struct RouteConditions {
    /// Any of these hosts.
    pub hosts: Option<Vec<HostPattern>>,
    /// The canonical path prefix (`/tools`; `/` for everything).
    pub prefix: Option<String>,
    /// Any of these methods (`GET` implies `HEAD`).
    pub methods: Option<Vec<Method>>,
}

impl RouteConditions {
    fn holds(&self, request: &Request<Body>, host: &mut Option<(String, Option<u16>)>) -> bool {
        if let Some(methods) = &self.methods {
            let method = request.method();
            let allowed = methods
                .iter()
                .any(|m| m == method || (m == Method::GET && method == Method::HEAD));
            if !allowed {
                return false;
            }
        }
        if let Some(prefix) = &self.prefix {
            if path_under(request.uri().path(), prefix).is_none() {
                return false;
            }
        }
        if let Some(hosts) = &self.hosts {
            let (name, port) = host.get_or_insert_with(|| request_host(request));
            if !hosts.iter().any(|pattern| pattern.matches(name, *port)) {
                return false;
            }
        }
        true
    }

    /// The first segment of the prefix, or None when the route takes any path.
    fn first_segment(&self) -> Option<&str> {
        let prefix = self.prefix.as_deref()?.trim_start_matches('/');
        let segment = prefix.split(['/', ';']).next().unwrap_or("");
        (!segment.is_empty()).then_some(segment)
    }
}

/// The request's host in lower case and the port its Host names, if any (`:authority`
/// for HTTP/2).
fn request_host(request: &Request<Body>) -> (String, Option<u16>) {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_ascii_lowercase();
    match split_port(&host) {
        Some((name, port)) => (name.trim_end_matches('.').to_owned(), port),
        None => (host, None),
    }
}

/// One route, ready to serve.
pub struct Route {
    /// When it takes a request.
    pub conditions: RouteConditions,
    /// Its middleware and action.
    pub service: GatewayService,
    /// Tell the action the prefix it is mounted at (`SCRIPT_NAME` for an app).
    pub mounts: bool,
}

/// What the router shares between connections.
struct Table {
    conditions: Vec<RouteConditions>,
    /// The decoded prefix of each mounting route.
    mounts: Vec<Option<MountPrefix>>,
    /// Candidate routes (in order) by the first segment of the request path.
    by_segment: HashMap<String, Vec<usize>>,
    /// Candidates for a path whose first segment no route names.
    any_path: Vec<usize>,
}

/// Routes requests to the first route that takes them.
#[derive(Clone)]
pub struct Router {
    table: Arc<Table>,
    services: Vec<GatewayService>,
    fallback: GatewayService,
}

impl Router {
    /// Route over `routes` (in order), with `fallback` for what none takes.
    pub fn new(routes: Vec<Route>, fallback: GatewayService) -> Self {
        let mut by_segment: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_path = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            match route.conditions.first_segment() {
                Some(segment) => by_segment
                    .entry(segment.to_owned())
                    .or_default()
                    .push(index),
                None => any_path.push(index),
            }
        }
        for candidates in by_segment.values_mut() {
            candidates.extend(&any_path);
            candidates.sort_unstable();
        }
        let mounts = routes
            .iter()
            .map(|route| {
                route.mounts.then(|| {
                    let prefix = route.conditions.prefix.as_deref().unwrap_or("");
                    let prefix = prefix.trim_end_matches('/');
                    let decoded: Vec<u8> = percent_encoding::percent_decode_str(prefix).collect();
                    MountPrefix(decoded.into())
                })
            })
            .collect();
        let (conditions, services) = routes
            .into_iter()
            .map(|route| (route.conditions, route.service))
            .unzip();
        Self {
            table: Arc::new(Table {
                conditions,
                mounts,
                by_segment,
                any_path,
            }),
            services,
            fallback,
        }
    }

    /// The index of the route that takes `request`, if any.
    fn route_for(&self, request: &Request<Body>) -> Option<usize> {
        let table = &self.table;
        let path = request.uri().path().trim_start_matches('/');
        let segment = path.split(['/', ';']).next().unwrap_or("");
        let candidates = table.by_segment.get(segment).unwrap_or(&table.any_path);
        let mut host = None;
        candidates
            .iter()
            .copied()
            .find(|&index| table.conditions[index].holds(request, &mut host))
    }
}

/// The response future of [`Router`].
pub(super) type RouterFuture = Either<
    <GatewayService as Service<Request<Body>>>::Future,
    tower::util::Oneshot<GatewayService, Request<Body>>,
>;

impl Service<Request<Body>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RouterFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each route's service is made ready when it is called.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let service = match self.route_for(&request) {
            Some(index) => {
                if let Some(mount) = &self.table.mounts[index] {
                    request.extensions_mut().insert(mount.clone());
                }
                &mut self.services[index]
            }
            None => &mut self.fallback,
        };
        call_when_ready(service, request)
    }
}

/// Call `service` in place if it is ready now (it always is, unless a layer applies
/// backpressure), else a clone of it once ready.
fn call_when_ready(service: &mut GatewayService, request: Request<Body>) -> RouterFuture {
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => Either::Left(service.call(request)),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => Either::Right(service.clone().oneshot(request)),
    }
}
