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

mod native;

use std::path::Path;

use axum::body::Body;
use gateway_middleware::request_path::{CanonicalPathLayer, PathRules};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::{GatewayConfig, MiddlewareConfig, PythonConfig};
use crate::server::RequestLimitsLayer;
use crate::types::{GatewayService, NativeLayer};
use crate::wsgi::{PythonStage, Stage, WsgiService};

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
pub fn plan(config: &GatewayConfig, base: &Path) -> Result<Plan, PipelineError> {
    let mut plan = Plan::default();
    for (index, entry) in config.middleware.iter().enumerate() {
        let fail = |message: String| PipelineError {
            index,
            kind: entry.kind(),
            message,
        };
        if let MiddlewareConfig::Python(python) = entry {
            plan.python
                .push(Stage::Python(python_stage(index, python).map_err(fail)?));
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

fn python_stage(index: usize, config: &PythonConfig) -> Result<PythonStage, String> {
    let (spec, filter) = match (&config.factory, &config.filter_factory) {
        (Some(spec), None) => (spec.clone(), false),
        (None, Some(spec)) => (spec.clone(), true),
        _ => return Err("set exactly one of factory and filter_factory".into()),
    };
    let options_json =
        serde_json::to_string(&config.options).map_err(|e| format!("options: {e}"))?;
    Ok(PythonStage {
        index,
        spec,
        filter,
        options_json,
    })
}

/// The pipeline in one line, with Python segments in brackets:
/// `access_log -> compression -> [python beaker..., python translogger] -> app`.
pub fn describe(config: &GatewayConfig) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut segment: Vec<String> = Vec::new();
    for entry in &config.middleware {
        match entry {
            MiddlewareConfig::Python(python) => {
                let spec = python.factory.as_ref().or(python.filter_factory.as_ref());
                let spec = spec.map_or_else(|| "?".to_owned(), ToString::to_string);
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

/// Compose the served pipeline: `outer` native layers, the request limits, and the
/// WSGI service (which runs the Python side).
pub fn build(
    config: &GatewayConfig,
    outer: &[(usize, NativeLayer)],
    app: WsgiService,
) -> GatewayService {
    // Refuse oversized requests before the application does any work for them; the
    // layers the user put in front (access log, static files) still see them.
    let limits = RequestLimitsLayer::new(config.limits.clone());
    // Every decision on a path (auth, static, headers rules) and the app's PATH_INFO use
    // the one canonical path; encoding tricks are refused before any layer sees them.
    let canonical_path = CanonicalPathLayer::new(PathRules {
        allow_encoded_slashes: config.limits.allow_encoded_slashes,
    });
    if outer.is_empty() {
        // No native layers: one boxed service, the hot path of a bare gateway.
        return ServiceBuilder::new()
            .layer(CatchPanicLayer::new())
            .layer(canonical_path)
            .layer(limits)
            .service(app)
            .map_response(|response| response.map(Body::new))
            .boxed_clone();
    }
    let inner = ServiceBuilder::new()
        .layer(limits)
        .service(app)
        .boxed_clone();
    let stacked = outer
        .iter()
        .rev()
        .fold(inner, |service, (_, layer)| layer(service));
    ServiceBuilder::new()
        // Outermost: a bug in any layer below becomes a 500, not a dropped connection.
        .layer(CatchPanicLayer::new())
        .layer(canonical_path)
        .service(stacked)
        .map_response(|response| response.map(Body::new))
        .boxed_clone()
}
