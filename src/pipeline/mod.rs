//! The request pipeline: `[[middleware]]` in, one tower service out.
//!
//! The first entry is the outermost layer and the application the innermost, in the
//! order a reader sees them and a request meets them:
//!
//! ```text
//! server ─▶ native layers before the first Python entry ─▶ [limits] ─▶ WsgiService
//!             (tower, on the runtime)                                   │ one crossing
//!                                                                       ▼ into Python
//!           Python entry ─▶ Python entry ─▶ NativeBridge(native layers) ─▶ Python entry ─▶ app
//!           (composed into one callable at start-up, run on one Python thread)
//! ```
//!
//! Native layers that come after a Python entry run inside a `NativeBridge` on the same
//! Python thread (see `wsgi::bridge`).

mod actions;
mod app_timeout;
mod forwarded;
mod limits;
mod native;
mod router;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use gateway_middleware::request_path::{CanonicalPathLayer, PathRules};
use http::{Request, Response, StatusCode};
use tower::util::{Either, MapRequestLayer};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;

pub use app_timeout::{AppTimeoutLayer, OnTimeout};
pub use limits::{RequestLimits, RequestLimitsLayer};
pub use router::{Route, RouteConditions, Router};

use crate::config::{
    GatewayConfig, MiddlewareConfig, PythonConfig, RouteConfig, StaticAction, StaticConfig,
};
use crate::metrics::MeterLayer;
use crate::telemetry::request_span::RequestSpanLayer;
use crate::types::{error_response, GatewayService, NativeLayer};
use crate::wsgi::{FactoryProtocol, PythonStage, Stage};

/// The pipeline, split where it crosses into Python.
#[derive(Clone, Default)]
pub struct Plan {
    /// Native layers in front of Python, outermost first.
    pub outer: Vec<(usize, NativeLayer)>,
    /// Everything from the first Python entry on, outermost first.
    pub python: Vec<Stage>,
}

/// A middleware entry that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("middleware[{index}] ({kind}): {message}")]
pub struct PipelineError {
    /// Position in `[[middleware]]`.
    pub index: usize,
    /// The entry's kind.
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Build every native layer and sort the entries into a [`Plan`].
pub fn plan(entries: &[MiddlewareConfig], base: &Path) -> Result<Plan, PipelineError> {
    let mut plan = Plan::default();
    for (index, entry) in entries.iter().enumerate() {
        let fail = |message: String| PipelineError {
            index,
            kind: entry.kind(),
            message,
        };
        if let MiddlewareConfig::Python(python) = entry {
            plan.python.push(Stage::Python(
                python_stage(index, python, base).map_err(fail)?,
            ));
            continue;
        }
        let layer = native_layer(entry, base).map_err(fail)?;
        if plan.python.is_empty() {
            plan.outer.push((index, layer));
        } else if let Some(Stage::Native(layers)) = plan.python.last_mut() {
            layers.push((index, layer));
        } else {
            plan.python.push(Stage::Native(vec![(index, layer)]));
        }
    }
    Ok(plan)
}

/// A route's action, built from its configuration.
pub enum Action {
    /// The WSGI app of this name (`"default"`: `[app]`); the worker serves it.
    App(String),
    /// A native action (static, redirect, respond), ready to serve.
    Native(GatewayService),
    /// The upstream of this name (`[upstream.NAME]`, or the URL of an inline one); each
    /// worker starts its own proxy to it.
    Proxy(String),
}

/// Build the action of `route` (its `path`, when set, is where it is mounted).
pub fn action(route: &RouteConfig, base: &Path) -> Result<Action, String> {
    let prefix = route.path.as_deref().unwrap_or("/");
    if let Some(name) = &route.app {
        return Ok(Action::App(name.clone()));
    }
    if let Some(target) = &route.proxy {
        return Ok(Action::Proxy(target.name()));
    }
    if let Some(statics) = &route.static_files {
        let config = match statics {
            StaticAction::Dir(dir) => StaticConfig::new(prefix.to_owned(), dir.clone()),
            StaticAction::Options(options) => {
                if !options.mount.is_empty() {
                    return Err("static.mount: a route's files are mounted at its path".into());
                }
                StaticConfig {
                    mount: prefix.to_owned(),
                    ..options.clone()
                }
            }
        };
        return native::static_terminal(&config, base).map(Action::Native);
    }
    let canonical = gateway_middleware::request_path::canonical_prefix(prefix)
        .map_err(|e| format!("path: {e}"))?;
    if let Some(redirect) = &route.redirect {
        let redirect = actions::Redirect::new(&redirect.options(), &canonical)
            .map_err(|e| format!("redirect: {e}"))?;
        return Ok(Action::Native(redirect.boxed_clone()));
    }
    if let Some(respond) = &route.respond {
        let respond = actions::Respond::new(respond).map_err(|e| format!("respond: {e}"))?;
        return Ok(Action::Native(respond.boxed_clone()));
    }
    Err("no action".into())
}

/// The conditions of `route`, parsed (its path canonical).
pub fn conditions(route: &RouteConfig) -> Result<RouteConditions, String> {
    let prefix = match &route.path {
        Some(path) => Some(
            gateway_middleware::request_path::canonical_prefix(path)
                .map_err(|e| format!("path {path:?}: {e}"))?,
        ),
        None => None,
    };
    let methods = match &route.methods {
        Some(methods) => Some(
            methods
                .iter()
                .map(|m| {
                    http::Method::from_bytes(m.as_bytes())
                        .map_err(|_| format!("methods: {m:?} is not a method"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    Ok(RouteConditions {
        hosts: route.host.as_ref().map(|hosts| hosts.0.clone()),
        prefix,
        methods,
    })
}

fn native_layer(entry: &MiddlewareConfig, base: &Path) -> Result<NativeLayer, String> {
    match entry {
        MiddlewareConfig::AccessLog(config) => native::access_log(config, base),
        MiddlewareConfig::Compression(config) => native::compression(config),
        MiddlewareConfig::Auth(config) => native::auth(config, base),
        MiddlewareConfig::Static(config) => native::static_files(config, base),
        MiddlewareConfig::Headers(config) => native::headers(config),
        MiddlewareConfig::Python(_) => unreachable!("python entries are not native"),
    }
}

fn python_stage(index: usize, config: &PythonConfig, base: &Path) -> Result<PythonStage, String> {
    let (spec, protocol) = match (
        &config.factory,
        &config.filter_factory,
        &config.filter_app_factory,
    ) {
        (Some(spec), None, None) => (spec.clone(), FactoryProtocol::Factory),
        (None, Some(spec), None) => (spec.clone(), FactoryProtocol::FilterFactory),
        (None, None, Some(spec)) => (spec.clone(), FactoryProtocol::FilterAppFactory),
        _ => {
            return Err(
                "set exactly one of factory and filter_factory (or filter_app_factory)".into(),
            )
        }
    };
    let options_json =
        serde_json::to_string(&config.options).map_err(|e| format!("options: {e}"))?;
    // PasteDeploy sets `here` and `__file__` to paths; relative ones are the config's.
    let mut global_conf = config.global_conf.clone();
    for key in ["here", "__file__"] {
        if let Some(path) = global_conf.get_mut(key) {
            if Path::new(path.as_str()).is_relative() {
                *path = normalize(&base.join(path.as_str())).display().to_string();
            }
        }
    }
    let global_conf_json =
        serde_json::to_string(&global_conf).map_err(|e| format!("global_conf: {e}"))?;
    Ok(PythonStage {
        index,
        spec,
        protocol,
        options_json,
        global_conf_json,
    })
}

/// `base/./x/..` as `base`: lexically, without touching the file system.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The pipeline in one line, with Python segments in brackets:
/// `access_log -> compression -> [python beaker..., python translogger] -> app`.
pub fn describe(config: &GatewayConfig) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut segment: Vec<String> = Vec::new();
    for entry in &config.middleware {
        match entry {
            MiddlewareConfig::Python(python) => {
                let spec = python
                    .spec()
                    .map_or_else(|| "?".to_owned(), ToString::to_string);
                segment.push(format!("python {spec}"));
            }
            native => {
                if !segment.is_empty() {
                    parts.push(format!("[{}]", segment.join(", ")));
                    segment.clear();
                }
                parts.push(native.kind().to_owned());
            }
        }
    }
    if !segment.is_empty() {
        parts.push(format!("[{}]", segment.join(", ")));
    }
    parts.push("app".to_owned());
    parts.join(" -> ")
}

/// What the request stack reports to the worker that runs it.
#[derive(Clone)]
pub struct WorkerHooks {
    /// Called for every request (the worker counts them towards `max_requests`).
    pub on_request: Arc<dyn Fn() + Send + Sync>,
}

/// The whole per-request stack, outermost first: what hyper calls for each request.
/// Every layer is here, one per line, with the reason for its place; the result is
/// boxed once.
pub fn build<A>(
    config: &GatewayConfig,
    configured: &[(usize, NativeLayer)],
    app: A,
    hooks: WorkerHooks,
) -> GatewayService
where
    A: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
{
    let proxies = Arc::new(config.server.forwarded_allow_ips.clone());
    let path_rules = PathRules {
        allow_encoded_slashes: config.limits.allow_encoded_slashes,
    };
    let on_request = hooks.on_request;
    // (server.queue_timeout and server.timeout are not here: they wrap each service
    // that runs Python, see `AppTimeoutLayer`, so proxies, static files and redirects
    // pay nothing for them.)
    let below_configured = ServiceBuilder::new()
        // After the configured layers, so the access log and static files still see
        // (and log) what the limits refuse; before the app does any work for them.
        .layer(RequestLimitsLayer::new(config.limits.clone()))
        .service(app);
    // `[[middleware]]`, first entry outermost. Access logs that come first go above the
    // canonical path (below), so that they also log the requests it refuses with 400,
    // as nginx logs them; they log the target as the client sent it either way.
    let leading_logs = configured
        .iter()
        .take_while(|(index, _)| {
            matches!(
                config.middleware.get(*index),
                Some(MiddlewareConfig::AccessLog(_))
            )
        })
        .count();
    let (logs, configured) = configured.split_at(leading_logs);
    let configured = wrap(below_configured, configured);
    let canonical = ServiceBuilder::new()
        // Before any decision on a path: every layer below and the app's PATH_INFO see
        // the one canonical path, and encoding tricks are refused here.
        .layer(CanonicalPathLayer::new(path_rules))
        .service(configured);
    let logged = wrap(canonical, logs);
    ServiceBuilder::new()
        // Outermost: a panic in any layer below becomes a logged 500, not a dropped
        // connection.
        .layer(CatchPanicLayer::custom(panic_response))
        // First, so that everything below (span, metrics, logs, REMOTE_ADDR) sees the
        // client that trusted proxies name, not the proxy.
        .layer(MapRequestLayer::new(move |mut request: Request<Body>| {
            forwarded::apply_to_request(&proxies, &mut request);
            request
        }))
        // The server span: everything below runs inside it.
        .layer(RequestSpanLayer)
        // Duration, sizes and status of every request, refused ones included.
        .layer(MeterLayer)
        // Counted towards server.max_requests, refused ones included.
        .layer(MapRequestLayer::new(move |request: Request<Body>| {
            on_request();
            request
        }))
        // Then the leading access logs, the canonical path, the other configured
        // layers, the limits and the app (above).
        .service(logged)
        .map_response(|response| response.map(Body::new))
        .boxed_clone()
}

/// `inner` in `layers` (`[[middleware]]` entries, first outermost); not boxed when
/// there are none.
fn wrap<S>(inner: S, layers: &[(usize, NativeLayer)]) -> Either<S, GatewayService>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    if layers.is_empty() {
        return Either::Left(inner);
    }
    let inner = inner.boxed_clone();
    Either::Right(
        layers
            .iter()
            .rev()
            .fold(inner, |service, (_, layer)| layer(service)),
    )
}

/// What a panic below [`CatchPanicLayer`] becomes.
fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!("a layer panicked: {message}: 500");
    error_response(StatusCode::INTERNAL_SERVER_ERROR)
}
