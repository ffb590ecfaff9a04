//! `gateway.toml`: the configuration model and how it is loaded.
//!
//! Sources, later ones winning: built-in defaults < the TOML file < `GATEWAY_*`
//! environment variables (nested keys joined with `__`, e.g. `GATEWAY_SERVER__THREADS=8`)
//! < command-line flags. `config/gateway.toml` in the repository is the annotated
//! reference of every key.

mod address;
mod app;
mod app_spec;
mod error;
mod limits;
mod middleware;
mod proxies;
mod route;
mod server;
mod sources;
mod telemetry;
pub mod units;
mod upstream;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use address::{BindAddress, FileMode};
pub use app::AppConfig;
pub use app_spec::{AppSpec, PasteSpec};
pub use error::ConfigError;
pub use limits::LimitsConfig;
pub use middleware::{
    AccessLogConfig, AuthConfig, AuthScheme, CompressionConfig, HeaderRules, HeadersConfig,
    MiddlewareConfig, PythonConfig, StaticConfig,
};
pub use proxies::{Cidr, TrustedProxies};
pub use route::{
    split_port, HostPattern, HostPatterns, RedirectAction, RedirectOptions, RespondAction,
    RouteConfig, StaticAction,
};
pub use server::{ServerConfig, TlsConfig};
pub use sources::{unused_variables, Flag, Flags};
pub use telemetry::{LogFormat, TelemetryConfig};
pub use upstream::{
    Balance, ForwardedStyle, HashKey, HealthConfig, HostPolicy, ProxyTarget, ServerAddress,
    ServerEntry, UpstreamConfig, UpstreamTls, WeightedServer,
};

use sources::Variables;

/// The whole configuration of one gateway.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listeners, processes, threads and timeouts.
    pub server: ServerConfig,
    /// The default WSGI application (what no route takes) and the Python environment
    /// every application shares.
    pub app: AppConfig,
    /// More WSGI applications, by name, for routes (`app = "NAME"`); same keys as `[app]`.
    pub apps: BTreeMap<String, AppConfig>,
    /// `[[route]]`: ordered; the first whose conditions all hold takes the request.
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// `[upstream.NAME]`: HTTP services routes proxy to (`proxy = "NAME"`).
    #[serde(rename = "upstream")]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Request size limits.
    pub limits: LimitsConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// The pipeline between the server and the application, outermost first.
    pub middleware: Vec<MiddlewareConfig>,
}

/// Values given on the command line; they override every other source.
#[derive(Clone, Debug, Default)]
pub struct CliOverrides {
    /// Flags that set a key (`--bind` sets `server.bind`).
    pub flags: Flags,
    /// `--access-logfile` / `--access-logformat`: an access log, outermost, or the
    /// output and format of the first `access_log` entry.
    pub access_log: Option<AccessLogFlags>,
}

/// gunicorn's access log flags.
#[derive(Clone, Debug, Default)]
pub struct AccessLogFlags {
    /// `--access-logfile`: `-` for stdout, or a file.
    pub output: Option<String>,
    /// `--access-logformat`: gunicorn atoms.
    pub format: Option<String>,
}

impl CliOverrides {
    /// Apply what figment cannot merge: the access log flags, to `[[middleware]]`.
    fn apply_access_log(&self, config: &mut GatewayConfig) {
        let Some(flags) = &self.access_log else {
            return;
        };
        let existing = config.middleware.iter_mut().find_map(|entry| match entry {
            MiddlewareConfig::AccessLog(log) => Some(log),
            _ => None,
        });
        let log = match existing {
            Some(log) => log,
            None => {
                config
                    .middleware
                    .insert(0, MiddlewareConfig::AccessLog(AccessLogConfig::default()));
                match &mut config.middleware[0] {
                    MiddlewareConfig::AccessLog(log) => log,
                    _ => unreachable!("just inserted"),
                }
            }
        };
        if let Some(output) = &flags.output {
            log.output = if output == "-" {
                "stdout".into()
            } else {
                output.clone()
            };
        }
        if let Some(format) = &flags.format {
            log.format = format.clone();
        }
    }
}

/// A loaded, validated configuration and where it came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The merged configuration.
    pub config: GatewayConfig,
    /// The config file, if one was read.
    pub file: Option<PathBuf>,
    /// The merged sources, to say where a value came from.
    figment: Figment,
}

impl LoadedConfig {
    /// Every key with its value and where the value came from, one per line
    /// (`server.threads = 8  # command-line flag --threads`), for `wsgi-gateway config`.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        if let Ok(value) = figment::value::Value::serialize(&self.config) {
            self.describe_value(&mut Vec::new(), &value, &mut lines);
        }
        let mut out = String::new();
        for (key, value, from) in lines {
            out.push_str(&format!("{key} = {value}  # {from}\n"));
        }
        out
    }

    fn describe_value(
        &self,
        path: &mut Vec<String>,
        value: &figment::value::Value,
        lines: &mut Vec<(String, String, String)>,
    ) {
        use figment::value::Value;
        match value {
            Value::Empty(..) => {}
            // A path relative to the config file: shown resolved.
            Value::Dict(_, dict) if dict.contains_key("___figment_relative_path") => {
                let relative = dict.get("___figment_relative_path").and_then(Value::as_str);
                let base = dict
                    .get("___figment_relative_metadata_path")
                    .and_then(Value::as_str)
                    .and_then(|file| Path::new(file).parent());
                if let Some(relative) = relative {
                    // From a flag or a variable: relative to the working folder.
                    let resolved = match base {
                        Some(base) => base.join(relative).display().to_string(),
                        None => relative.to_owned(),
                    };
                    self.describe_value(path, &Value::from(resolved), lines);
                }
            }
            Value::Dict(_, dict) if !dict.is_empty() => {
                for (key, value) in dict {
                    path.push(key.clone());
                    self.describe_value(path, value, lines);
                    path.pop();
                }
            }
            Value::Array(_, items) if items.iter().any(|v| matches!(v, Value::Dict(..))) => {
                for (index, item) in items.iter().enumerate() {
                    path.push(index.to_string());
                    self.describe_value(path, item, lines);
                    path.pop();
                }
            }
            leaf => {
                let rendered = serde_json::to_string(leaf).unwrap_or_else(|_| "?".into());
                // figment records where a list came from, not each element.
                let list_end = path
                    .iter()
                    .position(|p| p.parse::<usize>().is_ok())
                    .unwrap_or(path.len());
                let lookup = path[..list_end].join(".");
                let from = origin(self.figment.find_metadata(&lookup), &path[..list_end]);
                lines.push((key_name(path), rendered, from));
            }
        }
    }

    /// A problem with `key` found after loading (a file it names cannot be read, a layer
    /// cannot be built), reported like every other configuration error: the key, the
    /// problem and where the value came from. `key` is written as the README does:
    /// `server.tls.cert`, `middleware[2]`.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        invalid_value(&self.figment, key, message.into())
    }

    /// The folder relative paths in the config are resolved against: the config file's
    /// folder, or the current directory when there is no file.
    pub fn base_dir(&self) -> PathBuf {
        self.file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
    }
}

/// Load the configuration from `file` (if any), the environment and `overrides`, then
/// validate it. Nothing is bound or imported here.
pub fn load(file: Option<&Path>, overrides: &CliOverrides) -> Result<LoadedConfig, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(GatewayConfig::default()));
    let file = match file {
        Some(path) => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            std::fs::metadata(&absolute).map_err(|source| ConfigError::Unreadable {
                path: absolute.clone(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(&absolute));
            Some(absolute)
        }
        None => None,
    };
    let figment = figment
        // Only GATEWAY_<SECTION>__<KEY> variables are configuration; GATEWAY_CONFIG
        // names the file.
        .merge(Variables)
        .merge(overrides.flags.clone());
    let mut config: GatewayConfig = figment
        .extract()
        .map_err(|e| ConfigError::Parse(describe(&e)))?;
    overrides.apply_access_log(&mut config);
    validate(&config, &figment)?;
    Ok(LoadedConfig {
        config,
        file,
        figment,
    })
}

/// Render figment's errors as `key: problem (from source)`, one per line.
fn describe(errors: &figment::Error) -> String {
    errors
        .clone()
        .into_iter()
        .map(|error| {
            let key = if error.path.is_empty() {
                "(top level)".to_owned()
            } else {
                key_name(&error.path)
            };
            let problem = match &error.kind {
                figment::error::Kind::UnknownField(field, expected) => {
                    format!(
                        "unknown key {field:?}; expected one of: {}",
                        expected.join(", ")
                    )
                }
                kind => kind.to_string(),
            };
            format!(
                "{key}: {problem} (from {})",
                origin(error.metadata.as_ref(), &error.path)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A key path as the README writes it: list positions in brackets
/// (`middleware[0].kind`, not figment's `middleware.0.kind`).
fn key_name(path: &[String]) -> String {
    let mut key = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

/// Where the value of `path` came from: the full path of a file, the variable
/// (`GATEWAY_SERVER__BIND`) or the flag (`--bind`), or "defaults".
fn origin<S: AsRef<str>>(metadata: Option<&figment::Metadata>, path: &[S]) -> String {
    match metadata {
        Some(metadata) => match &metadata.source {
            Some(figment::Source::File(file)) => file.display().to_string(),
            _ if metadata.name.ends_with("GatewayConfig") => "defaults".to_owned(),
            _ => format!(
                "{} {}",
                metadata.name,
                metadata.interpolate(&figment::Profile::Global, path)
            ),
        },
        None => "defaults".to_owned(),
    }
}

/// A [`ConfigError::Invalid`] for `key`, with the source of its value. Lists are
/// written `middleware[2]`; figment records where a list came from, not each element.
fn invalid_value(figment: &Figment, key: &str, message: String) -> ConfigError {
    let lookup = key.split_once('[').map_or(key, |(list, _)| list);
    let path: Vec<&str> = lookup.split('.').collect();
    ConfigError::Invalid {
        key: key.to_owned(),
        message,
        origin: origin(figment.find_metadata(lookup), &path),
    }
}

/// Route checks: exactly one action, known apps, valid methods and paths, no route
/// hidden behind a catch-all.
fn validate_routes(
    config: &GatewayConfig,
    figment: &Figment,
    problems: &RefCell<Vec<ConfigError>>,
) {
    let has_python = |entries: &[MiddlewareConfig]| {
        entries
            .iter()
            .any(|entry| matches!(entry, MiddlewareConfig::Python(_)))
    };
    if !config.routes.is_empty() && has_python(&config.middleware) {
        problems.borrow_mut().push(invalid_value(
            figment,
            "middleware",
            "a Python entry in the global [[middleware]] cannot wrap [[route]]s yet: put it in \
             the [[route.middleware]] of the routes whose app it wraps"
                .into(),
        ));
    }
    let default_app = config.app.wsgi.is_some() || config.app.paste.is_some();
    let mut catch_all: Option<usize> = None;
    for (index, route) in config.routes.iter().enumerate() {
        let invalid = |field: &str, message: String| {
            let key = if field.is_empty() {
                format!("route[{index}]")
            } else {
                format!("route[{index}].{field}")
            };
            problems
                .borrow_mut()
                .push(invalid_value(figment, &key, message));
        };
        if let Some(earlier) = catch_all {
            invalid(
                "",
                format!("can never match: route[{earlier}] before it takes every request"),
            );
        }
        match route.actions().as_slice() {
            [_] => {}
            [] => invalid(
                "",
                "no action: set one of app, proxy, static, redirect, respond".into(),
            ),
            several => invalid(
                "",
                format!("one action per route, found {}", several.join(" and ")),
            ),
        }
        if let Some(path) = &route.path {
            if !path.starts_with('/') || path.contains("/../") || path.ends_with("/..") {
                invalid("path", format!("{path:?} must start with '/'"));
            }
        }
        for method in route.methods.iter().flatten() {
            let valid = !method.is_empty()
                && method
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            if !valid {
                invalid("methods", format!("{method:?} is not an upper-case method"));
            }
        }
        if let Some(name) = &route.app {
            let known = if name == "default" {
                default_app
            } else {
                config.apps.contains_key(name)
            };
            if !known {
                let mut names: Vec<&str> = config.apps.keys().map(String::as_str).collect();
                if default_app {
                    names.push("default");
                }
                invalid(
                    "app",
                    format!("no app named {name:?}; defined: {}", names.join(", ")),
                );
            }
        } else if has_python(&route.middleware) && route.proxy.is_none() {
            invalid(
                "middleware",
                "a Python entry needs an app or proxy action below it".into(),
            );
        }
        if let Some(ProxyTarget::Named(name)) = &route.proxy {
            if !config.upstreams.contains_key(name) {
                let names: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
                return invalid(
                    "proxy",
                    format!(
                        "no [upstream.{name}]; defined: {}",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
            }
        }
        if let Some(redirect) = &route.redirect {
            let status = redirect.options().status;
            if ![301, 302, 303, 307, 308].contains(&status) {
                invalid(
                    "redirect.status",
                    format!("must be 301, 302, 303, 307 or 308, got {status}"),
                );
            }
        }
        if let Some(respond) = &route.respond {
            if !(200..=599).contains(&respond.status) {
                invalid(
                    "respond.status",
                    format!("must be 200..=599, got {}", respond.status),
                );
            }
        }
        if route.is_catch_all() {
            catch_all = catch_all.or(Some(index));
        }
    }
}

/// Upstream checks: servers present, weights, balancing key, health thresholds.
fn validate_upstreams(
    config: &GatewayConfig,
    figment: &Figment,
    problems: &RefCell<Vec<ConfigError>>,
) {
    for (name, upstream) in &config.upstreams {
        let invalid = |field: &str, message: String| {
            problems.borrow_mut().push(invalid_value(
                figment,
                &format!("upstream.{name}.{field}"),
                message,
            ));
        };
        if upstream.servers.is_empty() {
            invalid("servers", "at least one server is needed".into());
        }
        for server in &upstream.servers {
            if !(1..=100).contains(&server.weight()) {
                invalid(
                    "servers",
                    format!("{}: weight must be 1..=100", server.address()),
                );
            }
        }
        if upstream.hash_by.is_some() && upstream.balance != Balance::Hash {
            invalid("hash_by", "applies only with balance = \"hash\"".into());
        }
        if upstream.retries > 10 {
            invalid(
                "retries",
                format!("must be 0..=10, got {}", upstream.retries),
            );
        }
        for (field, value) in [
            ("connect_timeout", upstream.connect_timeout),
            ("read_timeout", upstream.read_timeout),
            ("health.interval", upstream.health.interval),
            ("health.timeout", upstream.health.timeout),
        ] {
            if value.is_zero() {
                invalid(field, "must be more than 0".into());
            }
        }
        if let Some(prefix) = &upstream.strip_prefix {
            if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
                invalid(
                    "strip_prefix",
                    format!("{prefix:?} must start with '/' and not end with '/'"),
                );
            }
        }
        if let Some(path) = &upstream.health.path {
            if !path.starts_with('/') {
                invalid("health.path", format!("{path:?} must start with '/'"));
            }
        }
        if upstream.health.unhealthy_threshold == 0 || upstream.health.healthy_threshold == 0 {
            invalid("health", "thresholds must be at least 1".into());
        }
        if upstream.tls.cert.is_some() != upstream.tls.key.is_some() {
            invalid("tls", "set cert and key together".into());
        }
    }
}

/// Check values that parse but make no sense, naming the key and its source. Nothing
/// outside the configuration is looked at here: files, certificates and layers are
/// checked by the start-up step above this module.
fn validate(config: &GatewayConfig, figment: &Figment) -> Result<(), ConfigError> {
    let problems = RefCell::new(Vec::new());
    let invalid = |key: &str, message: String| {
        problems
            .borrow_mut()
            .push(invalid_value(figment, key, message));
    };
    let server = &config.server;
    let tls_binds = server.tls.as_ref().map_or(0, |tls| tls.bind.len());
    if server.bind.is_empty() && tls_binds == 0 {
        invalid(
            "server.bind",
            "at least one address is needed (here or in server.tls.bind)".into(),
        );
    }
    if server.workers == 0 || server.workers > 512 {
        invalid(
            "server.workers",
            format!("must be 1..=512 or \"auto\", got {}", server.workers),
        );
    }
    if server.threads == 0 || server.threads > 1024 {
        invalid(
            "server.threads",
            format!("must be 1..=1024, got {}", server.threads),
        );
    }
    if let Some(tls) = &server.tls {
        for address in &tls.bind {
            if let BindAddress::Unix(_) = address {
                invalid(
                    "server.tls.bind",
                    format!("{:?}: TLS listens on HOST:PORT", address.to_string()),
                );
            }
        }
    }
    if server.io_threads == 0 || server.io_threads > 256 {
        invalid(
            "server.io_threads",
            format!("must be 1..=256, got {}", server.io_threads),
        );
    }
    match (&config.app.wsgi, &config.app.paste) {
        (None, None) if config.routes.is_empty() => invalid(
            "app.wsgi",
            "no application: set app.wsgi = \"module:callable\" (or app.paste) or pass --app"
                .into(),
        ),
        (Some(_), Some(_)) => {
            invalid("app.paste", "set app.wsgi or app.paste, not both".into());
        }
        _ => {}
    }
    for (name, app) in &config.apps {
        let key = |field: &str| format!("apps.{name}.{field}");
        match (&app.wsgi, &app.paste) {
            (None, None) => invalid(
                &key("wsgi"),
                "set wsgi = \"module:callable\" or paste".into(),
            ),
            (Some(_), Some(_)) => invalid(&key("paste"), "set wsgi or paste, not both".into()),
            _ => {}
        }
        if app.virtualenv.is_some() && app.virtualenv != config.app.virtualenv {
            invalid(
                &key("virtualenv"),
                "every app runs in the one interpreter of the worker: set the virtualenv in [app]"
                    .into(),
            );
        }
        if !app.script_name.is_empty() {
            invalid(
                &key("script_name"),
                "a routed app's SCRIPT_NAME is the path of the route that takes the request".into(),
            );
        }
    }
    validate_routes(config, figment, &problems);
    validate_upstreams(config, figment, &problems);
    for (index, entry) in config.middleware.iter().enumerate() {
        if let MiddlewareConfig::Python(python) = entry {
            if !python.has_one_factory() {
                invalid(
                    &format!("middleware[{index}]"),
                    "(python) set exactly one of factory and filter_factory (or filter_app_factory)"
                        .into(),
                );
            }
        }
    }
    let script_name = &config.app.script_name;
    if !script_name.is_empty() && (!script_name.starts_with('/') || script_name.ends_with('/')) {
        invalid(
            "app.script_name",
            format!("must start with '/' and not end with '/', got {script_name:?}"),
        );
    }
    let limits = &config.limits;
    if limits.max_head_size.0 < 8192 {
        invalid("limits.max_head_size", "must be at least 8192 bytes".into());
    }
    if limits.max_header_count == 0 {
        invalid("limits.max_header_count", "must be at least 1".into());
    }
    if limits.max_request_line < 16 {
        invalid(
            "limits.max_request_line",
            "must be at least 16 bytes".into(),
        );
    }
    if let Err(message) = check_log_level(&config.telemetry.log_level) {
        invalid("telemetry.log_level", message);
    }
    ConfigError::all(problems.into_inner())
}

/// A `RUST_LOG`-style filter whose every directive names a level: `"info"`,
/// `"warn,wsgi_gateway=debug"`. (`EnvFilter` takes `"verbose"` as a target at `trace`
/// and then shows nothing; that is refused here.)
fn check_log_level(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} names no level; use one of {} (or TARGET=LEVEL, comma-separated)",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
// figment's Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn flags(threads: usize) -> CliOverrides {
        let mut flags = Flags::default();
        flags.set("--threads", "server.threads", threads);
        CliOverrides {
            flags,
            access_log: None,
        }
    }

    #[test]
    fn file_then_variables_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "gateway.toml",
                r#"
                [server]
                bind = ["127.0.0.1:9000", "unix:/tmp/gw.sock"]
                threads = 2
                workers = 3
                forwarded_allow_ips = "10.0.0.0/8"
                unix_socket_mode = "640"
                [app]
                wsgi = "site.wsgi:application"
                [[middleware]]
                kind = "python"
                factory = "beaker.middleware:SessionMiddleware"
                "#,
            )?;
            jail.set_env("GATEWAY_SERVER__WORKERS", "5");
            let loaded = load(Some(Path::new("gateway.toml")), &flags(7)).expect("valid");
            let server = &loaded.config.server;
            assert_eq!(
                server.bind,
                vec![
                    BindAddress::Tcp("127.0.0.1:9000".into()),
                    BindAddress::Unix("/tmp/gw.sock".into())
                ]
            );
            assert_eq!(server.workers, 5, "a variable beats the file");
            assert_eq!(server.threads, 7, "a flag beats both");
            assert!(server
                .forwarded_allow_ips
                .trusts("10.2.3.4".parse().unwrap()));
            assert!(!server
                .forwarded_allow_ips
                .trusts("127.0.0.1".parse().unwrap()));
            assert_eq!(server.unix_socket_mode, FileMode(0o640));
            let spec = loaded.config.app.wsgi.as_ref().unwrap();
            assert_eq!(
                (spec.module.as_str(), spec.expression.as_str()),
                ("site.wsgi", "application")
            );
            match &loaded.config.middleware[0] {
                MiddlewareConfig::Python(python) => {
                    assert_eq!(python.factory.as_ref().unwrap().module, "beaker.middleware")
                }
                other => panic!("{other:?}"),
            }
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key_and_where_the_value_came_from() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "gateway.toml",
                "[server]\nbind = \"nowhere\"\n[app]\nwsgi = \"site:app\"\n",
            )?;
            let error = load(Some(Path::new("gateway.toml")), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("server.bind: "), "{error}");
            assert!(error.contains("HOST:PORT"), "{error}");
            assert!(error.contains("gateway.toml"), "{error}");

            jail.create_file(
                "gateway.toml",
                "[app]\nwsgi = \"site:app\"\n[[middleware]]\nkind = \"python\"\nfactory = \"not a module\"\n",
            )?;
            let error = load(Some(Path::new("gateway.toml")), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("middleware[0]"), "{error}");
            assert!(error.contains("is not \"module:callable\""), "{error}");

            jail.create_file("gateway.toml", "[app]\nwsgi = \"site:app\"\n")?;
            jail.set_env("GATEWAY_SERVER__THREADS", "0");
            let error = load(Some(Path::new("gateway.toml")), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("server.threads: must be 1..=1024"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn an_application_is_required_and_only_one() {
        Jail::expect_with(|jail| {
            jail.create_file("gateway.toml", "[server]\nthreads = 2\n")?;
            let error = load(Some(Path::new("gateway.toml")), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("app.wsgi: no application"), "{error}");
            jail.create_file("app.ini", "[app:main]\n")?;
            jail.create_file(
                "gateway.toml",
                "[app]\nwsgi = \"site:app\"\npaste = \"app.ini\"\n",
            )?;
            let error = load(Some(Path::new("gateway.toml")), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("app.paste: set app.wsgi or app.paste"),
                "{error}"
            );
            Ok(())
        });
    }
}
