//! Composing the Python side of the pipeline: Python middleware wrapped around the
//! application, innermost first, with [`NativeBridge`]s where native layers sit between
//! Python ones. Adjacent Python entries become one callable: a request crosses into
//! Python once.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::runtime::Handle;
use tower::ServiceExt;

use super::bridge::{InlineApp, NativeBridge};
use super::interpreter::format_exception;
use super::traced::TracedCallable;
use super::WsgiError;
use crate::config::AppSpec;
use crate::types::NativeLayer;

/// A Python middleware entry, ready to be imported and called.
#[derive(Clone, Debug)]
pub struct PythonStage {
    /// Position in `[[middleware]]`.
    pub index: usize,
    /// `module:callable` of the factory.
    pub spec: AppSpec,
    /// How the factory is called.
    pub protocol: FactoryProtocol,
    /// The options table as JSON.
    pub options_json: String,
    /// PasteDeploy's `global_conf` as JSON (a table of strings; `{}` when unset).
    pub global_conf_json: String,
}

/// How a Python middleware factory is called with the app below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactoryProtocol {
    /// `factory(app, **options)`.
    Factory,
    /// PasteDeploy's `paste.filter_factory`: `factory(global_conf, **options)(app)`.
    FilterFactory,
    /// PasteDeploy's `paste.filter_app_factory`: `factory(app, global_conf, **options)`.
    FilterAppFactory,
}

/// One step of the Python side of the pipeline, outermost first.
#[derive(Clone)]
pub enum Stage {
    /// A Python middleware.
    Python(PythonStage),
    /// Native layers between Python middleware (or between one and the app).
    Native(Vec<(usize, NativeLayer)>),
}

/// The outermost callable of the Python side and what its first segment holds.
pub(super) struct Composed {
    /// What the pool threads call.
    pub callable: Py<PyAny>,
    /// The layers of the outermost Python segment, for its span (`wsgi.layers`).
    pub first_segment: String,
}

/// Wrap `app` in `stages` (outermost first) and return the outermost callable. With
/// `traced`, the app and each inner Python segment are called inside spans of their own
/// ([`TracedCallable`]).
pub(super) fn compose(
    py: Python<'_>,
    app: Py<PyAny>,
    app_name: &str,
    stages: &[Stage],
    runtime: &Handle,
    traced: bool,
) -> Result<Composed, WsgiError> {
    let traced_callable = |inner, name: &str, layers: &str| {
        TracedCallable::wrap(py, inner, name, layers)
            .map_err(|e| WsgiError::Interpreter(e.to_string()))
    };
    let mut callable = if traced {
        traced_callable(app, "WSGI application", app_name)?
    } else {
        app
    };
    // The layers of the segment being built, innermost first.
    let mut segment = vec![app_name.to_owned()];
    for stage in stages.iter().rev() {
        callable = match stage {
            Stage::Python(python) => {
                segment.push(python.spec.to_string());
                wrap_python(py, callable, python)?
            }
            Stage::Native(layers) => {
                let inner = if traced {
                    traced_callable(callable, "python segment", &describe(&segment))?
                } else {
                    callable
                };
                segment.clear();
                wrap_native(py, inner, layers, runtime)?
            }
        };
    }
    Ok(Composed {
        callable,
        first_segment: describe(&segment),
    })
}

/// Outermost first: `"beaker.middleware:SessionMiddleware -> app:application"`.
fn describe(innermost_first: &[String]) -> String {
    let mut layers: Vec<&str> = innermost_first.iter().map(String::as_str).collect();
    layers.reverse();
    if layers.is_empty() {
        "native layers".to_owned()
    } else {
        layers.join(" -> ")
    }
}

fn wrap_python(
    py: Python<'_>,
    app: Py<PyAny>,
    stage: &PythonStage,
) -> Result<Py<PyAny>, WsgiError> {
    let fail = |traceback: String| WsgiError::Middleware {
        entry: stage.index,
        spec: stage.spec.to_string(),
        traceback,
    };
    let factory = super::interpreter::load_app(py, &stage.spec).map_err(|e| match e {
        WsgiError::AppImport { traceback, .. } => fail(traceback),
        other => fail(other.to_string()),
    })?;
    let options =
        options_dict(py, &stage.options_json).map_err(|e| fail(format_exception(py, &e)))?;
    let global_conf =
        options_dict(py, &stage.global_conf_json).map_err(|e| fail(format_exception(py, &e)))?;
    let factory = factory.bind(py);
    let wrapped = match stage.protocol {
        FactoryProtocol::Factory => factory.call((app,), Some(&options)),
        // PasteDeploy: filter_factory(global_conf, **local_conf)(app)
        FactoryProtocol::FilterFactory => factory
            .call((global_conf,), Some(&options))
            .and_then(|filter| filter.call1((app,))),
        // PasteDeploy: filter_app_factory(app, global_conf, **local_conf)
        FactoryProtocol::FilterAppFactory => factory.call((app, global_conf), Some(&options)),
    };
    let wrapped = wrapped.map_err(|e| fail(format_exception(py, &e)))?;
    if !wrapped.is_callable() {
        return Err(fail(format!(
            "{} returned a {}, not a WSGI callable",
            stage.spec,
            wrapped.get_type()
        )));
    }
    Ok(wrapped.unbind())
}

/// A JSON object (the entry's `options`, or `global_conf`) as a dict.
fn options_dict<'py>(py: Python<'py>, json: &str) -> PyResult<Bound<'py, PyDict>> {
    let loaded = py.import("json")?.call_method1("loads", (json,))?;
    Ok(loaded.cast_into::<PyDict>()?)
}

fn wrap_native(
    py: Python<'_>,
    app: Py<PyAny>,
    layers: &[(usize, NativeLayer)],
    runtime: &Handle,
) -> Result<Py<PyAny>, WsgiError> {
    let mut service = InlineApp::new(app).boxed_clone();
    for (_, layer) in layers.iter().rev() {
        service = layer(service);
    }
    let bridge = NativeBridge::new(service, runtime.clone());
    Bound::new(py, bridge)
        .map(|b| b.into_any().unbind())
        .map_err(|e| WsgiError::Interpreter(e.to_string()))
}
