//! The iterable an application returns: its items as bytes, and its `close()`, called
//! exactly once. Shared by the server ([`super::call`]) and the native bridge
//! ([`super::bridge`]).

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::interpreter::format_exception;

/// One item of the body, which PEP 3333 says must be `bytes`.
pub(crate) fn chunk_bytes<'a, 'py>(
    item: &'a Bound<'py, PyAny>,
) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "the application yielded {}, but a WSGI body is made of bytes",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// One item of the body, copied out of Python.
pub(crate) fn chunk_copy(item: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    Ok(Bytes::copy_from_slice(chunk_bytes(item)?.as_bytes()))
}

/// The application's iterable, closed exactly once: by [`Iterable::close`], or when
/// dropped without it (an early return, a panic).
pub(crate) struct Iterable<'py> {
    iterable: Option<Bound<'py, PyAny>>,
}

impl<'py> Iterable<'py> {
    /// Take charge of closing `iterable`.
    pub(crate) fn new(iterable: Bound<'py, PyAny>) -> Self {
        Self {
            iterable: Some(iterable),
        }
    }

    /// The iterable itself.
    pub(crate) fn get(&self) -> &Bound<'py, PyAny> {
        self.iterable.as_ref().expect("open until closed")
    }

    /// Call `close()` if it has one, and report its error.
    pub(crate) fn close(mut self) -> PyResult<()> {
        close(&self.iterable.take().expect("closed once"))
    }
}

impl Drop for Iterable<'_> {
    fn drop(&mut self) {
        if let Some(iterable) = self.iterable.take() {
            close_logged(&iterable);
        }
    }
}

/// Call `iterable.close()` if it has one.
pub(crate) fn close(iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    // Lists, tuples and bytes have no close(); skip the attribute lookup for them.
    if iterable.is_exact_instance_of::<PyList>()
        || iterable.is_exact_instance_of::<PyTuple>()
        || iterable.is_exact_instance_of::<PyBytes>()
    {
        return Ok(());
    }
    match iterable.getattr(pyo3::intern!(iterable.py(), "close")) {
        Ok(close) => close.call0().map(drop),
        Err(_) => Ok(()),
    }
}

/// Call `iterable.close()` if it has one, logging its error (for paths that already
/// report another failure).
pub(crate) fn close_logged(iterable: &Bound<'_, PyAny>) {
    if let Err(error) = close(iterable) {
        tracing::error!(
            target: "wsgi_gateway::app",
            "close() of the response iterable failed:\n{}",
            format_exception(iterable.py(), &error)
        );
    }
}
