//! The start-up step: everything in the configuration that touches the outside world
//! (certificates, htpasswd and token files, static folders, access-log outputs, the
//! PasteDeploy files), checked by building it once. `serve` (in the supervisor before it
//! binds, and in each worker to serve) and `check` both run it, so a configuration that
//! passes `check` starts.
//!
//! Configuration parsing itself (`crate::config`) looks at nothing outside the files it
//! reads; the Python applications are imported later, by each worker.

use std::collections::BTreeMap;

use tokio_rustls::TlsAcceptor;

use crate::config::{AppConfig, ConfigError, LoadedConfig};
use crate::pipeline::{self, Action, Plan, RouteConditions};
use crate::server::tls;
use crate::wsgi::environ::EnvironSettings;
use crate::wsgi::interpreter::PythonSetup;
use crate::wsgi::{AppSettings, AppSource};

/// The name `[app]` goes by in routes (`app = "default"`).
pub const DEFAULT_APP: &str = "default";

/// What the configuration names, built once and ready to serve.
pub struct Prepared {
    /// The TLS acceptor of `server.tls`, if any.
    pub tls: Option<TlsAcceptor>,
    /// `[[middleware]]`: native layers built, Python entries ready to import.
    pub plan: Plan,
    /// The interpreter every application shares: virtualenv and `sys.path`.
    pub python: PythonSetup,
    /// The applications by name (`[app]` as [`DEFAULT_APP`], if it names one).
    pub apps: BTreeMap<String, AppSettings>,
    /// `[[route]]`, in order.
    pub routes: Vec<PreparedRoute>,
}

/// One route: when it applies, its own middleware, its action.
pub struct PreparedRoute {
    /// Its position in the file (`route[N]`).
    pub index: usize,
    /// When it takes a request.
    pub conditions: RouteConditions,
    /// `[[route.middleware]]`.
    pub plan: Plan,
    /// What it does.
    pub action: Action,
}

/// Check and build everything the configuration names; the first problem found is
/// reported with its key and where its value came from.
pub fn prepare(loaded: &LoadedConfig) -> Result<Prepared, ConfigError> {
    let config = &loaded.config;
    let base = loaded.base_dir();
    let tls = match &config.server.tls {
        Some(settings) => Some(
            tls::acceptor(settings, config.server.http2)
                .map_err(|error| loaded.invalid("server.tls", error.to_string()))?,
        ),
        None => None,
    };
    let plan = pipeline::plan(&config.middleware, &base)
        .map_err(|error| middleware_error(loaded, "", &error))?;
    let mut apps = BTreeMap::new();
    if config.app.wsgi.is_some() || config.app.paste.is_some() {
        apps.insert(
            DEFAULT_APP.to_owned(),
            app_settings(loaded, &config.app, "app")?,
        );
    }
    for (name, app) in &config.apps {
        apps.insert(
            name.clone(),
            app_settings(loaded, app, &format!("apps.{name}"))?,
        );
    }
    let mut routes = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        let key = format!("route[{index}]");
        let conditions =
            pipeline::conditions(route).map_err(|message| loaded.invalid(&key, message))?;
        let plan = pipeline::plan(&route.middleware, &base)
            .map_err(|error| middleware_error(loaded, &format!("{key}."), &error))?;
        let action =
            pipeline::action(route, &base).map_err(|message| loaded.invalid(&key, message))?;
        routes.push(PreparedRoute {
            index,
            conditions,
            plan,
            action,
        });
    }
    Ok(Prepared {
        tls,
        plan,
        python: python_setup(loaded),
        apps,
        routes,
    })
}

fn middleware_error(
    loaded: &LoadedConfig,
    prefix: &str,
    error: &pipeline::PipelineError,
) -> ConfigError {
    loaded.invalid(
        &format!("{prefix}middleware[{}]", error.index),
        format!("({}) {}", error.kind, error.message),
    )
}

/// The one interpreter: `[app]`'s virtualenv, every app's `python_path`.
fn python_setup(loaded: &LoadedConfig) -> PythonSetup {
    let config = &loaded.config;
    let mut python_path: Vec<_> = std::iter::once(&config.app)
        .chain(config.apps.values())
        .flat_map(|app| app.python_path.iter().map(|p| p.relative()))
        .collect();
    python_path.dedup();
    if python_path.is_empty() {
        python_path.push(std::env::current_dir().unwrap_or_default());
    }
    PythonSetup {
        virtualenv: config.app.virtualenv.as_ref().map(|v| v.relative()),
        active_virtualenv: std::env::var_os("VIRTUAL_ENV").map(Into::into),
        python_path,
    }
}

/// One application and the request facts it is served with.
fn app_settings(
    loaded: &LoadedConfig,
    app: &AppConfig,
    key: &str,
) -> Result<AppSettings, ConfigError> {
    let config = &loaded.config;
    let source = match (&app.wsgi, app.paste_spec()) {
        (Some(spec), _) => AppSource::Wsgi(spec.clone()),
        (None, Some(paste)) => {
            std::fs::metadata(&paste.file).map_err(|error| {
                loaded.invalid(
                    &format!("{key}.paste"),
                    format!("cannot read {}: {error}", paste.file.display()),
                )
            })?;
            AppSource::Paste(paste)
        }
        (None, None) => return Err(loaded.invalid(&format!("{key}.wsgi"), "no application")),
    };
    Ok(AppSettings {
        source,
        environ: EnvironSettings {
            script_name: app.script_name.clone(),
            multithread: config.server.threads > 1,
            multiprocess: config.server.workers > 1,
        },
        threads: config.server.threads,
        write_timeout: config.server.write_timeout,
        read_timeout: config.server.read_timeout,
        max_body_size: config.limits.max_body_size.0,
    })
}
