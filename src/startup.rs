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

use crate::config::{AppConfig, ConfigError, LoadedConfig, ProxyTarget, UpstreamConfig};
use crate::pipeline::{self, Action, Plan, RouteConditions};
use crate::proxy::{self, UpstreamPlan};
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
    /// The folder to change to before importing (`app.chdir`).
    pub chdir: Option<std::path::PathBuf>,
    /// Send the apps' `sys.stdout`/`sys.stderr` to the log (with JSON logs, so that
    /// every line is JSON).
    pub capture_output: bool,
    /// The applications by name (`[app]` as [`DEFAULT_APP`], if it names one).
    pub apps: BTreeMap<String, AppSettings>,
    /// `[[route]]`, in order.
    pub routes: Vec<PreparedRoute>,
    /// The upstreams routes proxy to, by name (an inline one by its URL).
    pub upstreams: BTreeMap<String, UpstreamPlan>,
    /// How a Python pool in front of a proxy route is served (threads, timeouts).
    pub bridge: AppSettings,
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
    let mut upstreams = BTreeMap::new();
    for (name, upstream) in &config.upstreams {
        let plan = proxy::prepare(name, upstream)
            .map_err(|error| loaded.invalid(&format!("upstream.{name}"), error.to_string()))?;
        upstreams.insert(name.clone(), plan);
    }
    let mut routes = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        if let Some(ProxyTarget::Inline(server)) = &route.proxy {
            let name = route
                .proxy
                .as_ref()
                .map(ProxyTarget::name)
                .unwrap_or_default();
            let plan = proxy::prepare(&name, &UpstreamConfig::inline(server.clone())).map_err(
                |error| loaded.invalid(&format!("route[{index}].proxy"), error.to_string()),
            )?;
            upstreams.entry(name).or_insert(plan);
        }
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
    // Python middleware in front of a proxy route runs on a pool like an app's.
    let bridge = serving(loaded, AppSource::Native, String::new());
    Ok(Prepared {
        tls,
        plan,
        python: python_setup(loaded),
        chdir: config.app.chdir.as_ref().map(|dir| dir.relative()),
        capture_output: config.telemetry.log_format == crate::config::LogFormat::Json,
        apps,
        routes,
        upstreams,
        bridge,
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
        // As gunicorn: the folder the app runs in is importable.
        let folder = match &config.app.chdir {
            Some(dir) => dir.relative(),
            None => std::env::current_dir().unwrap_or_default(),
        };
        python_path.push(folder);
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
    Ok(serving(loaded, source, app.script_name.clone()))
}

/// How `source` is served: the request facts and the `[server]` settings.
fn serving(loaded: &LoadedConfig, source: AppSource, script_name: String) -> AppSettings {
    let config = &loaded.config;
    AppSettings {
        source,
        environ: EnvironSettings {
            script_name,
            multithread: config.server.threads > 1,
            multiprocess: config.server.workers > 1,
        },
        threads: config.server.threads,
        write_timeout: config.server.write_timeout,
        read_timeout: config.server.read_timeout,
        max_body_size: config.limits.max_body_size.0,
        buffer_body: config.limits.buffer_body.0,
        buffer_memory: config.limits.buffer_memory.0,
        min_body_rate: crate::wsgi::body_rate::MinBodyRate {
            bytes_per_second: config.limits.min_body_rate.0,
            window: config.limits.min_body_rate_window,
        },
    }
}
