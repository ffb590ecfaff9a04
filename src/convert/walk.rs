//! Run `walker.py` in the embedded interpreter and read what it returns.

use std::ffi::CString;
use std::path::Path;

use pyo3::prelude::*;

use super::description::Description;
use super::ConvertError;
use crate::wsgi::interpreter::{self, PythonSetup};

/// The walker, shipped inside the binary.
const WALKER: &str = include_str!("walker.py");

/// Start Python (in `$VIRTUAL_ENV`, as `serve` does) and describe `file#name` with
/// PasteDeploy's loader. Nothing of the stack is imported or called.
pub(super) fn describe(file: &Path, name: &str) -> Result<Description, ConvertError> {
    let virtualenv = std::env::var_os("VIRTUAL_ENV").map(std::path::PathBuf::from);
    let python = virtualenv.as_ref().map_or_else(
        || "the Python wsgi-gateway was built with; VIRTUAL_ENV is not set".to_owned(),
        |venv| format!("VIRTUAL_ENV={}", venv.display()),
    );
    interpreter::start(&PythonSetup {
        virtualenv: None,
        active_virtualenv: virtualenv,
        python_path: Vec::new(),
    })
    .map_err(|e| ConvertError::Interpreter(e.to_string()))?;
    let spec = format!("{}#{name}", file.display());
    let json = Python::attach(|py| -> Result<String, ConvertError> {
        if py.import("paste.deploy.loadwsgi").is_err() {
            return Err(ConvertError::NoPasteDeploy { python });
        }
        let code = CString::new(WALKER).expect("walker.py has no NUL");
        let module = PyModule::from_code(
            py,
            &code,
            c"wsgi_gateway_convert_walker.py",
            c"wsgi_gateway_convert_walker",
        )
        .map_err(|e| ConvertError::Interpreter(interpreter::format_exception(py, &e)))?;
        module
            .getattr("describe")
            .and_then(|describe| describe.call1((file.to_string_lossy().as_ref(), name)))
            .and_then(|json| json.extract::<String>())
            .map_err(|e| ConvertError::Paste {
                spec: spec.clone(),
                message: loader_message(py, &e),
            })
    })?;
    serde_json::from_str(&json)
        .map_err(|e| ConvertError::Unsupported(format!("walker.py returned unexpected data: {e}")))
}

/// The loader's own message for the errors a user makes (a missing section, an unknown
/// egg or entry point, a bad option); the whole traceback for anything else.
fn loader_message(py: Python<'_>, error: &PyErr) -> String {
    let expected = [
        "LookupError",
        "ValueError",
        "OSError",
        "ImportError",
        "configparser.Error",
        "importlib.metadata.PackageNotFoundError",
    ];
    let is_expected = expected.iter().any(|name| {
        let (module, class) = name.rsplit_once('.').unwrap_or(("builtins", name));
        py.import(module)
            .and_then(|m| m.getattr(class))
            .is_ok_and(|class| error.get_type(py).is_subclass(&class).unwrap_or(false))
    });
    if is_expected {
        let kind = error
            .get_type(py)
            .name()
            .map_or_else(|_| "Error".to_owned(), |name| name.to_string());
        format!("{kind}: {}", error.value(py))
    } else {
        interpreter::format_exception(py, error)
    }
}
