//! The Python extension module `wsgi_gateway._gateway`: the gateway installed with pip.
//!
//! Built by maturin with the `extension-module` feature (see `pyproject.toml`). The
//! console script `wsgi-gateway` and `python -m wsgi_gateway` both call
//! `wsgi_gateway.__main__.main`, which calls [`run`] with the command line. The
//! interpreter is the one that imported this module, the virtualenv's `python`, so no
//! libpython is linked or searched for at run time: the gateway adopts that interpreter
//! (`wsgi::interpreter`) and starts its workers as the same Python entry point
//! (`workers::launch`).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::cli::Cli;

/// mimalloc, as in the binary (src/main.rs says why): the allocator of the gateway's
/// Rust code; Python keeps its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `wsgi_gateway._gateway`: `run` and `__version__`.
#[pymodule]
#[pyo3(name = "_gateway")]
fn gateway_module(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_function(wrap_pyfunction!(run, module)?)?;
    Ok(())
}

/// Run the gateway with `args`, its command line without the program name, and return
/// its exit status. Workers are started as `worker_command` (e.g. `[sys.executable,
/// "-m", "wsgi_gateway"]`) followed by `args`.
///
/// Call it from the main thread, once per process. The GIL is released while the
/// gateway runs (its Python threads attach as they serve). SIGINT, SIGTERM and SIGHUP
/// belong to the gateway from here on, as in the cargo-built binary: Python's own
/// SIGINT handler is removed. The interpreter should not be finalised afterwards
/// while a worker's Python threads may still be parked: `__main__` ends the process
/// with `os._exit`, as the binary ends without finalising.
#[pyfunction]
fn run(py: Python<'_>, args: Vec<OsString>, worker_command: Vec<OsString>) -> PyResult<u8> {
    if worker_command.is_empty() {
        return Err(PyValueError::new_err(
            "worker_command must name the program that starts a worker",
        ));
    }
    let signal = py.import("signal")?;
    let default = signal.getattr("SIG_DFL")?;
    for name in ["SIGINT", "SIGTERM", "SIGHUP"] {
        signal.call_method1("signal", (signal.getattr(name)?, &default))?;
    }
    let argv = std::iter::once(OsString::from("wsgi-gateway")).chain(args.iter().cloned());
    let status = match Cli::try_parse_from(argv) {
        Ok(cli) => {
            if let Err(message) = crate::workers::launch::check_supervisor_version() {
                eprintln!("wsgi-gateway: {message}");
                return Ok(1);
            }
            crate::workers::launch::start_workers_with(worker_command, args);
            exit_status(py.detach(|| crate::run(cli)))
        }
        // --help, --version, or a usage error: clap's text and exit status.
        Err(error) => {
            let _ = error.print();
            u8::try_from(error.exit_code()).unwrap_or(2)
        }
    };
    // Nothing flushes Rust's stdout at exit in a library.
    let _ = std::io::stdout().flush();
    Ok(status)
}

/// The number in an `ExitCode` (std has no getter; the gateway uses 0..=255 only).
fn exit_status(code: ExitCode) -> u8 {
    (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .unwrap_or(1)
}
