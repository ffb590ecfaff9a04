//! The Python boundary: embedded CPython, the Python thread pool and PEP 3333.
//!
//! # Layout
//! - [`interpreter`]: start CPython in the right virtualenv, import the application.
//! - [`compose`](PythonStage): Python middleware wrapped around the app at start-up,
//!   adjacent entries fused into one callable, with [`bridge`]s where native layers sit
//!   between them.
//! - [`pool`]: the Python threads, each attached to the interpreter for life.
//! - `call`: one request through `app(environ, start_response)`.
//! - [`environ`], [`input`], [`response`], [`errors`], [`file_wrapper`]: the PEP 3333
//!   objects the application sees.
//! - `head` and `iterable`: the rules for `start_response` and for the returned
//!   iterable (bytes items, `close()` once), shared by `call` and [`bridge`].
//! - [`body`]: the response body on its way back to hyper, coalescing small chunks.
//! - [`buffering`], [`body_rate`]: request buffering and the minimum rate of a streamed
//!   request body.
//! - [`bridge`]: the `NativeBridge`, a WSGI callable that runs native layers on the
//!   calling Python thread, and `InlineApp`, the app as a service below them.
//! - `traced`: spans around each Python segment and the application.
//! - [`service`]: [`WsgiService`], the Python side as a tower `Service`; [`serve`] for
//!   an app, [`serve_native`] for a native service (a proxy) behind Python middleware;
//!   [`ticket`]: a request's way to a Python thread (queued, started, abandoned).
//! - `error`: [`WsgiError`], the one error type of this module.

pub mod body;
pub mod body_rate;
pub mod bridge;
pub mod buffering;
mod call;
mod compose;
pub mod environ;
mod error;
pub mod errors;
pub mod file_wrapper;
mod head;
pub mod input;
pub mod interpreter;
mod iterable;
pub mod pool;
pub mod response;
pub mod service;
pub mod ticket;
mod traced;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{AppSpec, PasteSpec};

use pyo3::prelude::*;

pub use compose::{FactoryProtocol, PythonStage, Stage};
pub use error::WsgiError;
pub use service::WsgiService;
pub use ticket::JobTicket;

use environ::{EnvironBuilder, EnvironSettings};
use errors::ErrorStream;
use file_wrapper::FileWrapper;
use pool::{AppContext, PythonPool};

/// Where the application comes from.
#[derive(Clone, Debug)]
pub enum AppSource {
    /// `module:callable`.
    Wsgi(AppSpec),
    /// A PasteDeploy file.
    Paste(PasteSpec),
    /// Nothing to import: a native service (a proxy) with Python middleware in front of
    /// it, reached through the `NativeBridge` (see [`serve_native`]).
    Native,
}

/// What it takes to load and serve one application.
#[derive(Clone, Debug)]
pub struct AppSettings {
    /// The application.
    pub source: AppSource,
    /// Static environ facts.
    pub environ: EnvironSettings,
    /// Python threads.
    pub threads: usize,
    /// Slow-client bounds.
    pub write_timeout: Duration,
    /// How long `wsgi.input` waits for more body.
    pub read_timeout: Duration,
    /// Largest request body.
    pub max_body_size: u64,
    /// Request bodies up to this size are read before the application is called.
    pub buffer_body: u64,
    /// Most memory all bodies being read ahead may hold in this process.
    pub buffer_memory: u64,
    /// How fast a streamed request body must arrive.
    pub min_body_rate: body_rate::MinBodyRate,
}

/// Start the interpreter of this process (once, before any application is imported):
/// the virtualenv, and `sys.path` for every application.
pub fn start(python: &interpreter::PythonSetup) -> Result<(), WsgiError> {
    interpreter::start(python)
}

/// Send the application's `print()` and standard streams to the gateway's log (see
/// [`errors::capture_output`]).
pub fn capture_output() -> Result<(), WsgiError> {
    Python::attach(errors::capture_output)
        .map_err(|e| WsgiError::Interpreter(format!("cannot capture sys.stdout: {e}")))
}

/// An imported application: the callable and its name for spans and messages.
pub struct ImportedApp {
    callable: Py<PyAny>,
    name: String,
}

/// Import an application (`module:callable`, or a PasteDeploy stack). On an import
/// error the returned error carries the Python traceback.
pub fn import(source: &AppSource) -> Result<ImportedApp, WsgiError> {
    Python::attach(|py| {
        let (callable, name) = match source {
            AppSource::Wsgi(spec) => (interpreter::load_app(py, spec)?, spec.to_string()),
            AppSource::Paste(paste) => (interpreter::load_paste(py, paste)?, paste.to_string()),
            AppSource::Native => {
                return Err(WsgiError::Interpreter(
                    "a native service has nothing to import".into(),
                ))
            }
        };
        Ok(ImportedApp { callable, name })
    })
}

/// Wrap `app` in the Python side of its pipeline (`stages`, outermost first) and start
/// a pool of Python threads to serve it.
pub fn serve(
    app: &ImportedApp,
    settings: &AppSettings,
    stages: &[Stage],
    runtime: tokio::runtime::Handle,
) -> Result<WsgiService, WsgiError> {
    let callable = Python::attach(|py| app.callable.clone_ref(py));
    serve_callable(callable, &app.name, settings, stages, runtime)
}

/// Serve a native `service` (a proxy) behind the Python side of its pipeline
/// (`stages`, outermost first): the stages wrap a `NativeBridge` over the service,
/// called on a pool of Python threads like an application. `name` names it in spans.
pub fn serve_native(
    service: crate::types::GatewayService,
    name: &str,
    settings: &AppSettings,
    stages: &[Stage],
    runtime: tokio::runtime::Handle,
) -> Result<WsgiService, WsgiError> {
    let callable = Python::attach(|py| {
        Bound::new(py, bridge::NativeBridge::new(service, runtime.clone()))
            .map(|bridge| bridge.into_any().unbind())
            .map_err(|e| WsgiError::Interpreter(e.to_string()))
    })?;
    serve_callable(callable, name, settings, stages, runtime)
}

fn serve_callable(
    callable: Py<PyAny>,
    name: &str,
    settings: &AppSettings,
    stages: &[Stage],
    runtime: tokio::runtime::Handle,
) -> Result<WsgiService, WsgiError> {
    let context = Python::attach(|py| -> Result<AppContext, WsgiError> {
        let traced = crate::telemetry::tracing_enabled();
        let composed = compose::compose(py, callable, name, stages, &runtime, traced)?;
        let objects = (|| -> PyResult<_> {
            let errors = Bound::new(py, ErrorStream::default())?.into_any();
            let file_wrapper = py.get_type::<FileWrapper>().into_any();
            EnvironBuilder::new(py, &settings.environ, errors, file_wrapper)
        })();
        let environ = objects.map_err(|e| WsgiError::Interpreter(e.to_string()))?;
        Ok(AppContext {
            app: composed.callable,
            first_segment: composed.first_segment,
            environ,
            runtime,
            write_timeout: settings.write_timeout,
            read_timeout: settings.read_timeout,
            max_body_size: settings.max_body_size,
            min_body_rate: settings.min_body_rate,
        })
    })?;
    let pool = PythonPool::start(settings.threads, Arc::new(context))
        .map_err(|e| WsgiError::Interpreter(format!("cannot start Python threads: {e}")))?;
    Ok(WsgiService::new(
        pool,
        settings.environ.script_name.clone(),
        buffering::BufferPolicy {
            buffer_body: settings.buffer_body,
            buffer_memory: settings.buffer_memory,
            max_body_size: settings.max_body_size,
            read_timeout: settings.read_timeout,
        },
    ))
}

/// Run the interpreter's `atexit` handlers once the last request is done, as a Python
/// process (or a gunicorn worker) would on a normal exit. The interpreter itself is not
/// finalised: pool threads may still be parked in it.
pub fn run_exit_handlers() {
    Python::attach(|py| {
        let result = py
            .import("atexit")
            .and_then(|atexit| atexit.call_method0("_run_exitfuncs"));
        if let Err(error) = result {
            tracing::warn!(
                "atexit handlers failed: {}",
                interpreter::format_exception(py, &error)
            );
        }
    });
}
