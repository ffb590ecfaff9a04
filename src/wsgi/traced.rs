//! Spans for the Python side of the pipeline, when traces are exported: a WSGI callable
//! that calls another inside a span of its own. Composed around the application ("WSGI
//! application") and around each Python segment below a native bridge ("python
//! segment"); the outermost segment's span is opened by the pool thread itself.
//!
//! Each span is a child of the span current on the Python thread, and the callable
//! below sees that span's W3C context as `HTTP_TRACEPARENT`. It covers the call; the
//! iteration of the response belongs to the enclosing segment's span.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Calls `inner` inside a span named `name`.
#[pyclass(module = "wsgi_gateway", name = "TracedCallable", frozen)]
pub struct TracedCallable {
    inner: Py<PyAny>,
    name: String,
    layers: String,
}

impl TracedCallable {
    /// Wrap `inner`; `layers` names what the span covers (`wsgi.layers`).
    pub fn wrap(py: Python<'_>, inner: Py<PyAny>, name: &str, layers: &str) -> PyResult<Py<PyAny>> {
        let traced = Self {
            inner,
            name: name.to_owned(),
            layers: layers.to_owned(),
        };
        Ok(Bound::new(py, traced)?.into_any().unbind())
    }
}

#[pymethods]
impl TracedCallable {
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        environ: Bound<'py, PyDict>,
        start_response: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let span = segment_span(&tracing::Span::current(), &self.name, &self.layers);
        let _entered = span.enter();
        super::call::set_trace_context(&environ, &span)?;
        self.inner.bind(py).call1((environ, start_response))
    }
}

/// A span for the Python side, child of `parent`.
pub(super) fn segment_span(parent: &tracing::Span, name: &str, layers: &str) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::SPAN_TARGET,
        parent: parent,
        "python",
        otel.name = name,
        wsgi.layers = layers,
    )
}
