//! Text streams written to the gateway's log: `wsgi.errors`, and (with JSON logs) the
//! application's `sys.stdout` and `sys.stderr`, so `print()` and Python's own logging
//! handlers become log records like every other line.

use std::sync::Mutex;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use tracing::Level;

/// A text stream whose every line becomes one log record. Text is buffered until a
/// newline. `environ["wsgi.errors"]` is one (target `wsgi.errors`, WARN).
#[pyclass(module = "wsgi_gateway", name = "ErrorStream")]
pub struct ErrorStream {
    pending: Mutex<String>,
    target: Target,
}

/// Where a stream's lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    WsgiErrors,
    Stdout,
    Stderr,
}

impl Default for ErrorStream {
    fn default() -> Self {
        Self::new(Target::WsgiErrors)
    }
}

impl ErrorStream {
    fn new(target: Target) -> Self {
        Self {
            pending: Mutex::new(String::new()),
            target,
        }
    }

    fn emit_complete_lines(&self, pending: &mut String) {
        while let Some(at) = pending.find('\n') {
            let line: String = pending.drain(..=at).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            // tracing's targets and levels are static at each call site.
            match self.target {
                Target::WsgiErrors => tracing::warn!(target: "wsgi.errors", "{line}"),
                Target::Stdout => tracing::info!(target: "python.stdout", "{line}"),
                Target::Stderr => tracing::warn!(target: "python.stderr", "{line}"),
            }
        }
    }

    /// The level this stream logs at.
    fn level(&self) -> Level {
        match self.target {
            Target::Stdout => Level::INFO,
            Target::WsgiErrors | Target::Stderr => Level::WARN,
        }
    }
}

#[pymethods]
impl ErrorStream {
    /// Write text; complete lines are logged at once.
    fn write(&self, text: &str) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push_str(text);
        self.emit_complete_lines(&mut pending);
        text.chars().count()
    }

    /// Write each string of `lines`.
    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(line?.extract::<&str>()?);
        }
        Ok(())
    }

    /// Log whatever is buffered, even without a trailing newline.
    fn flush(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            pending.push('\n');
            self.emit_complete_lines(&mut pending);
        }
    }

    /// Not a terminal: libraries that color their output check this.
    fn isatty(&self) -> bool {
        false
    }

    /// A text stream for writing.
    fn writable(&self) -> bool {
        true
    }

    /// Not readable.
    fn readable(&self) -> bool {
        false
    }

    /// Not seekable.
    fn seekable(&self) -> bool {
        false
    }

    /// No descriptor behind it (as io.StringIO).
    fn fileno(&self) -> PyResult<i32> {
        Err(PyOSError::new_err(
            "fileno: this stream is the gateway's log",
        ))
    }

    /// Never closed.
    #[getter]
    fn closed(&self) -> bool {
        false
    }

    /// Text is UTF-8.
    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    /// The log level its lines get (`"INFO"` or `"WARN"`), for introspection.
    #[getter]
    fn level_name(&self) -> &'static str {
        self.level().as_str()
    }
}

/// Route the interpreter's `sys.stdout` and `sys.stderr` into the gateway's log (INFO
/// and WARN records with targets `python.stdout` and `python.stderr`), so `print()`
/// and Python logging's stream handlers come out as log lines too (JSON lines with
/// `telemetry.log_format = "json"`). Call before the application is imported.
pub fn capture_output(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    sys.setattr("stdout", Bound::new(py, ErrorStream::new(Target::Stdout))?)?;
    sys.setattr("stderr", Bound::new(py, ErrorStream::new(Target::Stderr))?)?;
    Ok(())
}
