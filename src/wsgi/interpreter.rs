//! Starting the embedded CPython (or adopting the running one) and importing the
//! application.
//!
//! - **Embedded** (the cargo-built binary): the interpreter is initialised through
//!   `PyConfig` with `program_name` set to the virtualenv's `bin/python` (or the Python
//!   the gateway was built against), so Python's own path computation finds
//!   `pyvenv.cfg` and sets `sys.prefix` and site-packages exactly as running that
//!   `python` would. Python's signal handlers are not installed: the gateway owns
//!   SIGINT/SIGTERM/SIGHUP.
//! - **Hosted** (installed with pip: the gateway is the extension module
//!   `wsgi_gateway._gateway`, imported by the virtualenv's python): the interpreter is
//!   already running, with that virtualenv's `sys.prefix`; it is adopted as it is.
//!   `app.virtualenv`, if set, must name that same virtualenv; `$VIRTUAL_ENV` is not
//!   consulted (the python that runs the gateway already chose).

use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::WsgiError;
use crate::config::{AppSpec, PasteSpec};

/// Where Python should come from and what goes on `sys.path`.
#[derive(Clone, Debug, Default)]
pub struct PythonSetup {
    /// `app.virtualenv`: the virtualenv to run in, if set.
    pub virtualenv: Option<PathBuf>,
    /// `$VIRTUAL_ENV`: the embedded interpreter's virtualenv when `app.virtualenv` is
    /// not set.
    pub active_virtualenv: Option<PathBuf>,
    /// Entries put in front of `sys.path`, in order.
    pub python_path: Vec<PathBuf>,
}

/// The interpreter the binary was linked against, recorded by `build.rs`.
const BUILD_PYTHON: &str = env!("WSGI_GATEWAY_BUILD_PYTHON");

/// Start the interpreter once for this process (or adopt the one that imported the
/// gateway) and leave the GIL released so pool threads can attach. Must be called
/// before any other Python use.
pub fn start(setup: &PythonSetup) -> Result<(), WsgiError> {
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return adopt(setup);
    }
    let program = match setup
        .virtualenv
        .as_ref()
        .or(setup.active_virtualenv.as_ref())
    {
        Some(venv) => venv_python(venv)?,
        None => PathBuf::from(BUILD_PYTHON),
    };
    // SAFETY: called once, before any other thread touches Python; every pointer passed
    // to the C API outlives the call that uses it.
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let result = (|| {
            let program = CString::new(program.as_os_str().as_encoded_bytes())
                .map_err(|_| WsgiError::Interpreter("program path contains NUL".into()))?;
            check(ffi::PyConfig_SetBytesString(
                &mut config,
                &mut config.program_name,
                program.as_ptr(),
            ))?;
            let argv0 = c"wsgi-gateway";
            let mut argv = [argv0.as_ptr()];
            check(ffi::PyConfig_SetBytesArgv(
                &mut config,
                1,
                argv.as_mut_ptr(),
            ))?;
            check(ffi::Py_InitializeFromConfig(&config))
        })();
        ffi::PyConfig_Clear(&mut config);
        result?;
        // Hand the GIL back: from here on every thread attaches through pyo3.
        ffi::PyEval_SaveThread();
    }
    Python::attach(|py| prepend_sys_path(py, &setup.python_path))
        .map_err(|e| WsgiError::Interpreter(format!("cannot set sys.path: {e}")))
}

/// Use the running interpreter (the gateway is a Python extension module): check that it
/// is the configured virtualenv's, and set `sys.path`. The caller does not hold the GIL.
fn adopt(setup: &PythonSetup) -> Result<(), WsgiError> {
    Python::attach(|py| {
        let sys = py.import("sys").map_err(|e| interpreter_error(py, &e))?;
        if let Some(venv) = &setup.virtualenv {
            let prefix: PathBuf = sys
                .getattr("prefix")
                .and_then(|prefix| prefix.extract())
                .map_err(|e| interpreter_error(py, &e))?;
            if !same_directory(venv, &prefix) {
                return Err(WsgiError::Virtualenv {
                    path: venv.display().to_string(),
                    message: format!(
                        "the gateway was started by the Python of {} (it is installed \
                         there); start the wsgi-gateway of {} instead, or remove \
                         app.virtualenv",
                        prefix.display(),
                        venv.display()
                    ),
                });
            }
        }
        forget_removed_environment(py).map_err(|e| interpreter_error(py, &e))?;
        prepend_sys_path(py, &setup.python_path).map_err(|e| interpreter_error(py, &e))
    })
}

/// Python's `os.environ` is a copy of the environment taken when Python started: drop
/// the variables this process has removed since (the supervisor's handoff), so the
/// application's subprocesses do not inherit them, as in the embedded interpreter.
fn forget_removed_environment(py: Python<'_>) -> PyResult<()> {
    let environ = py.import("os")?.getattr("environ")?;
    let keys: Vec<OsString> = environ
        .call_method0("keys")?
        .try_iter()?
        .map(|key| key?.extract())
        .collect::<PyResult<_>>()?;
    for key in keys {
        if std::env::var_os(&key).is_none() {
            environ.call_method1("pop", (key, py.None()))?;
        }
    }
    Ok(())
}

fn interpreter_error(py: Python<'_>, error: &PyErr) -> WsgiError {
    WsgiError::Interpreter(format_exception(py, error))
}

/// Whether two paths name the same directory (symlinks resolved where they exist).
fn same_directory(a: &Path, b: &Path) -> bool {
    let resolve = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    resolve(a) == resolve(b)
}

/// The version of the Python this gateway runs, e.g. `"3.12.1"`: the linked libpython
/// of the cargo-built binary, the importing interpreter of the extension module.
pub fn python_version() -> String {
    // SAFETY: Py_GetVersion only reads a static string; it may be called before the
    // interpreter is initialised.
    let full = unsafe { std::ffi::CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    full.split(' ').next().unwrap_or_default().to_owned()
}

/// Turn a `PyStatus` into an error.
///
/// # Safety
/// `status` must be a `PyStatus` returned by one of CPython's configuration calls in
/// this process: its `err_msg`, when not null, then points to a NUL-terminated static
/// string that CPython owns.
unsafe fn check(status: ffi::PyStatus) -> Result<(), WsgiError> {
    // SAFETY: PyStatus is a plain C struct returned by value.
    if unsafe { ffi::PyStatus_Exception(status) } == 0 {
        return Ok(());
    }
    let message = if status.err_msg.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: err_msg is a static C string set by CPython.
        unsafe { std::ffi::CStr::from_ptr(status.err_msg) }
            .to_string_lossy()
            .into_owned()
    };
    Err(WsgiError::Interpreter(message))
}

/// The `bin/python` of a virtualenv, after checking it was made for our Python version.
fn venv_python(venv: &Path) -> Result<PathBuf, WsgiError> {
    let fail = |message: String| WsgiError::Virtualenv {
        path: venv.display().to_string(),
        message,
    };
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg"))
        .map_err(|e| fail(format!("not a virtualenv (pyvenv.cfg: {e})")))?;
    let ours = built_version();
    let theirs = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        matches!(key.trim(), "version" | "version_info").then(|| value.trim().to_owned())
    });
    if let (Some(theirs), Some(ours)) = (theirs, ours) {
        if !theirs.starts_with(&ours) {
            return Err(fail(format!(
                "made with Python {theirs}, but the gateway embeds Python {ours}; \
                 recreate it with that Python"
            )));
        }
    }
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Err(fail("has no bin/python".into()));
    }
    Ok(python)
}

/// `"3.11"` for the Python we were built against.
fn built_version() -> Option<String> {
    // The linked library knows its own version without running anything.
    let full = python_version();
    let mut parts = full.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

fn prepend_sys_path(py: Python<'_>, entries: &[PathBuf]) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    for (index, entry) in entries.iter().enumerate() {
        sys_path.insert(index, entry.to_string_lossy().as_ref())?;
    }
    Ok(())
}

/// Import the module named by `spec` and return the callable, or the Python traceback.
pub fn load_app(py: Python<'_>, spec: &AppSpec) -> Result<Py<PyAny>, WsgiError> {
    let fail = |traceback: String| WsgiError::AppImport {
        spec: spec.to_string(),
        traceback,
    };
    let module = py
        .import(spec.module.as_str())
        .map_err(|e| fail(format_exception(py, &e)))?;
    let app = if spec.is_attribute_path() {
        let mut object = module.clone().into_any();
        for part in spec.expression.split('.') {
            object = object
                .getattr(part)
                .map_err(|e| fail(format_exception(py, &e)))?;
        }
        object
    } else {
        let namespace = module.dict();
        let code = CString::new(spec.expression.as_str())
            .map_err(|_| fail("expression contains NUL".into()))?;
        py.eval(&code, Some(&namespace), None::<&Bound<'_, PyDict>>)
            .map_err(|e| fail(format_exception(py, &e)))?
    };
    if !app.is_callable() {
        return Err(fail(format!(
            "{}:{} is a {}, not a callable",
            spec.module,
            spec.expression,
            app.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    }
    Ok(app.unbind())
}

/// The full Python traceback of `error`, as `traceback.format_exception` prints it.
pub fn format_exception(py: Python<'_>, error: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|traceback| {
        let lines = traceback.call_method1(
            "format_exception",
            (error.get_type(py), error.value(py), error.traceback(py)),
        )?;
        let text: String = ""
            .into_pyobject(py)?
            .call_method1("join", (lines,))?
            .extract()?;
        Ok::<_, PyErr>(text)
    });
    match formatted {
        Ok(text) => text.trim_end().to_owned(),
        Err(_) => error.to_string(),
    }
}

/// Load a PasteDeploy stack with `paste.deploy.loadapp`, after configuring logging from
/// the file's `[loggers]` sections as `pserve` does.
pub fn load_paste(py: Python<'_>, spec: &PasteSpec) -> Result<Py<PyAny>, WsgiError> {
    let shown = spec.to_string();
    let fail = |traceback: String| WsgiError::AppImport {
        spec: shown.clone(),
        traceback,
    };
    let code = c"
import configparser, logging.config, os
from paste.deploy import loadapp
_parser = configparser.ConfigParser()
_parser.read(path)
if _parser.has_section('loggers'):
    logging.config.fileConfig(path, defaults={'here': os.path.dirname(path), '__file__': path},
                              disable_existing_loggers=False)
app = loadapp('config:' + path, name=name)
";
    let namespace = PyDict::new(py);
    let run = (|| -> PyResult<Py<PyAny>> {
        namespace.set_item("path", spec.file.to_string_lossy().as_ref())?;
        namespace.set_item("name", spec.name.as_str())?;
        py.run(code, Some(&namespace), None)?;
        Ok(namespace
            .get_item("app")?
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("loadapp returned nothing"))?
            .unbind())
    })();
    run.map_err(|e| fail(format_exception(py, &e)))
}
