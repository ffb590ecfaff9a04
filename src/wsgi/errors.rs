//! `wsgi.errors`: the application's error stream, written to the gateway's log.

use std::sync::Mutex;

use pyo3::prelude::*;

/// The object behind `environ["wsgi.errors"]`. Text is buffered until a newline and
/// each line becomes one log record (target `wsgi.errors`, level WARN).
#[pyclass(module = "wsgi_gateway", name = "ErrorStream")]
#[derive(Default)]
pub struct ErrorStream {
    pending: Mutex<String>,
}

impl ErrorStream {
    fn emit_complete_lines(pending: &mut String) {
        while let Some(at) = pending.find('\n') {
            let line: String = pending.drain(..=at).collect();
            tracing::warn!(target: "wsgi.errors", "{}", line.trim_end_matches(['\r', '\n']));
        }
    }
}

#[pymethods]
impl ErrorStream {
    /// Write text; complete lines are logged at once.
    fn write(&self, text: &str) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push_str(text);
        Self::emit_complete_lines(&mut pending);
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
            Self::emit_complete_lines(&mut pending);
        }
    }
}
