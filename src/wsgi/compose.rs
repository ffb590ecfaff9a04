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
use super::{AppSpec, WsgiError};
use crate::pipeline::{NativeLayer, PythonStage, Stage};

/// Wrap `app` in `stages` (outermost first) and return the outermost callable.
pub fn compose(
    py: Python<'_>,
    app: Py<PyAny>,
    stages: &[Stage],
    runtime: &Handle,
) -> Result<Py<PyAny>, WsgiError> {
    let mut callable = app;
    for stage in stages.iter().rev() {
        callable = match stage {
            Stage::Python(python) => wrap_python(py, callable, python)?,
            Stage::Native(layers) => wrap_native(py, callable, layers, runtime)?,
        };
    }
    Ok(callable)
}

fn wrap_python(
    py: Python<'_>,
    app: Py<PyAny>,
    stage: &PythonStage,
) -> Result<Py<PyAny>, WsgiError> {
    let fail = |traceback: String| WsgiError::Middleware {
        entry: stage.index,
        spec: stage.spec.clone(),
        traceback,
    };
    let spec = AppSpec::parse(&stage.spec).map_err(&fail)?;
    let factory = super::interpreter::load_app(py, &spec, &stage.spec).map_err(|e| match e {
        WsgiError::AppImport { traceback, .. } => fail(traceback),
        other => fail(other.to_string()),
    })?;
    let options =
        options_dict(py, &stage.options_json).map_err(|e| fail(format_exception(py, &e)))?;
    let wrapped = if stage.filter {
        // PasteDeploy: filter_factory(global_conf, **local_conf)(app)
        let global_conf = PyDict::new(py);
        factory
            .bind(py)
            .call((global_conf,), Some(&options))
            .and_then(|filter| filter.call1((app,)))
    } else {
        factory.bind(py).call((app,), Some(&options))
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

/// The entry's `options` table as keyword arguments.
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
