//! The start-up step: everything in the configuration that touches the outside world
//! (certificates, htpasswd and token files, static folders, access-log outputs, the
//! PasteDeploy file), checked by building it once. `serve` (in the supervisor before it
//! binds, and in each worker to serve) and `check` both run it, so a configuration that
//! passes `check` starts.
//!
//! Configuration parsing itself (`crate::config`) looks at nothing outside the files it
//! reads; the Python application is imported later, by each worker.

use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, LoadedConfig};
use crate::pipeline::{self, Plan};
use crate::server::tls;
use crate::wsgi::environ::EnvironSettings;
use crate::wsgi::interpreter::PythonSetup;
use crate::wsgi::{AppSettings, AppSource};

/// What the configuration names, built once and ready to serve.
pub struct Prepared {
    /// The TLS acceptor of `server.tls`, if any.
    pub tls: Option<TlsAcceptor>,
    /// `[[middleware]]`: native layers built, Python entries ready to import.
    pub plan: Plan,
    /// The application and its Python environment.
    pub app: AppSettings,
}

/// Check and build everything the configuration names; the first problem found is
/// reported with its key and where its value came from.
pub fn prepare(loaded: &LoadedConfig) -> Result<Prepared, ConfigError> {
    let config = &loaded.config;
    let tls = match &config.server.tls {
        Some(settings) => Some(
            tls::acceptor(settings, config.server.http2)
                .map_err(|error| loaded.invalid("server.tls", error.to_string()))?,
        ),
        None => None,
    };
    let plan = pipeline::plan(config, &loaded.base_dir()).map_err(|error| {
        loaded.invalid(
            &format!("middleware[{}]", error.index),
            format!("({}) {}", error.kind, error.message),
        )
    })?;
    let app = app_settings(loaded)?;
    Ok(Prepared { tls, plan, app })
}

/// The application, its Python environment and the request facts it is served with.
fn app_settings(loaded: &LoadedConfig) -> Result<AppSettings, ConfigError> {
    let config = &loaded.config;
    let python_path = if config.app.python_path.is_empty() {
        vec![std::env::current_dir().unwrap_or_default()]
    } else {
        config
            .app
            .python_path
            .iter()
            .map(|p| p.relative())
            .collect()
    };
    let virtualenv = config
        .app
        .virtualenv
        .as_ref()
        .map(|v| v.relative())
        .or_else(|| std::env::var_os("VIRTUAL_ENV").map(Into::into));
    let source = match (&config.app.wsgi, config.app.paste_spec()) {
        (Some(spec), _) => AppSource::Wsgi(spec.clone()),
        (None, Some(paste)) => {
            std::fs::metadata(&paste.file).map_err(|error| {
                loaded.invalid(
                    "app.paste",
                    format!("cannot read {}: {error}", paste.file.display()),
                )
            })?;
            AppSource::Paste(paste)
        }
        (None, None) => return Err(loaded.invalid("app.wsgi", "no application")),
    };
    Ok(AppSettings {
        source,
        python: PythonSetup {
            virtualenv,
            python_path,
        },
        environ: EnvironSettings {
            script_name: config.app.script_name.clone(),
            multithread: config.server.threads > 1,
            multiprocess: config.server.workers > 1,
        },
        threads: config.server.threads,
        write_timeout: config.server.write_timeout,
        read_timeout: config.server.read_timeout,
        max_body_size: config.limits.max_body_size.0,
        buffer_body: config.limits.buffer_body.0,
        min_body_rate: crate::wsgi::body_rate::MinBodyRate {
            bytes_per_second: config.limits.min_body_rate.0,
            window: config.limits.min_body_rate_window,
        },
    })
}
