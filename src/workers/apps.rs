//! What a worker's request stack ends in: the one application, or the router over the
//! `[[route]]`s with their middleware and actions. Python applications are imported
//! here, each once, in the worker's one interpreter.

use std::collections::HashMap;

use tokio::runtime::Handle;
use tower::{Layer, ServiceExt};

use crate::pipeline::{Action, AppTimeoutLayer, Route, Router};
use crate::startup::{Prepared, DEFAULT_APP};
use crate::types::{error_response, GatewayService};
use crate::wsgi::{self, ImportedApp, WsgiError, WsgiService};

/// Start the interpreter, import the applications and build the service the request
/// stack ends in, each service that runs Python behind `timeout` (`server.queue_timeout`
/// and `server.timeout`). Runs on a blocking thread: importing holds the GIL.
pub fn load(
    prepared: &Prepared,
    runtime: Handle,
    timeout: &AppTimeoutLayer,
) -> Result<GatewayService, WsgiError> {
    if let Some(dir) = &prepared.chdir {
        std::env::set_current_dir(dir).map_err(|error| {
            WsgiError::Interpreter(format!("app.chdir {}: {error}", dir.display()))
        })?;
    }
    wsgi::start(&prepared.python)?;
    if prepared.capture_output {
        wsgi::capture_output()?;
    }
    // Each application that serves requests, imported once: the default one and those
    // routes name.
    let mut imported: HashMap<&str, ImportedApp> = HashMap::new();
    let used = prepared
        .routes
        .iter()
        .filter_map(|route| match &route.action {
            Action::App(name) => Some(name.as_str()),
            Action::Native(_) | Action::Proxy(_) => None,
        })
        .chain(
            prepared
                .apps
                .contains_key(DEFAULT_APP)
                .then_some(DEFAULT_APP),
        );
    for name in used {
        if !imported.contains_key(name) {
            imported.insert(name, wsgi::import(&prepared.apps[name].source)?);
        }
    }
    if prepared.routes.is_empty() {
        // One application, wrapped in the Python entries of [[middleware]].
        let service = wsgi::serve(
            &imported[DEFAULT_APP],
            &prepared.apps[DEFAULT_APP],
            &prepared.plan.python,
            runtime,
        )?;
        return Ok(timeout.layer(service).boxed_clone());
    }
    // Apps served as they are share one pool per app; an app with Python middleware of
    // its route's gets a pool for that composition.
    let mut plain: HashMap<String, WsgiService> = HashMap::new();
    // One proxy per upstream in this worker, shared by the routes that name it.
    let mut proxies: HashMap<&str, crate::proxy::Proxy> = HashMap::new();
    let mut routes = Vec::with_capacity(prepared.routes.len());
    for route in &prepared.routes {
        let (action, mounts) = match &route.action {
            Action::Native(service) => (service.clone(), false),
            Action::Proxy(name) => {
                let proxy = proxies
                    .entry(name.as_str())
                    .or_insert_with(|| prepared.upstreams[name.as_str()].start(&runtime))
                    .clone();
                let service = if route.plan.python.is_empty() {
                    proxy.boxed_clone()
                } else {
                    // Python middleware above the proxy: the proxy runs below it, on the
                    // same Python thread, through the NativeBridge.
                    let bridged = wsgi::serve_native(
                        proxy.boxed_clone(),
                        &format!("proxy {name}"),
                        &prepared.bridge,
                        &route.plan.python,
                        runtime.clone(),
                    )?;
                    timeout.layer(bridged).boxed_clone()
                };
                (service, false)
            }
            Action::App(name) => {
                let settings = &prepared.apps[name.as_str()];
                let service = if route.plan.python.is_empty() {
                    match plain.get(name) {
                        Some(service) => service.clone(),
                        None => {
                            let service = wsgi::serve(
                                &imported[name.as_str()],
                                settings,
                                &[],
                                runtime.clone(),
                            )?;
                            plain.insert(name.clone(), service.clone());
                            service
                        }
                    }
                } else {
                    wsgi::serve(
                        &imported[name.as_str()],
                        settings,
                        &route.plan.python,
                        runtime.clone(),
                    )?
                };
                (timeout.layer(service).boxed_clone(), true)
            }
        };
        // [[route.middleware]] before its first Python entry, first entry outermost.
        let service = route
            .plan
            .outer
            .iter()
            .rev()
            .fold(action, |service, (_, layer)| layer(service));
        routes.push(Route {
            conditions: route.conditions.clone(),
            service,
            mounts,
        });
    }
    let fallback = if prepared.apps.contains_key(DEFAULT_APP) {
        let service = match plain.get(DEFAULT_APP) {
            Some(service) => service.clone(),
            None => wsgi::serve(
                &imported[DEFAULT_APP],
                &prepared.apps[DEFAULT_APP],
                &[],
                runtime,
            )?,
        };
        timeout.layer(service).boxed_clone()
    } else {
        tower::service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(error_response(http::StatusCode::NOT_FOUND))
        })
        .boxed_clone()
    };
    Ok(Router::new(routes, fallback).boxed_clone())
}
