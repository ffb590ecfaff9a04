//! The command line: gunicorn's flags where they mean the same thing, each mapped to the
//! configuration key it sets (so `wsgi-gateway config` can say where a value came
//! from), the app as a positional argument, and a hint for gunicorn flags that have
//! another spelling here or no equivalent.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{AccessLogFlags, CliOverrides, Flags};

/// Serve Python WSGI applications (PEP 3333): HTTP/1.1 and HTTP/2 in front, embedded
/// CPython behind, one pipeline of native and Python middleware and routes in between.
///
/// `wsgi-gateway APP [FLAGS]` is short for `wsgi-gateway serve APP [FLAGS]`. Every
/// flag sets a key of the configuration (see config/gateway.toml, the annotated
/// reference) and wins over the file and `GATEWAY_*` variables.
#[derive(Debug, Parser)]
#[command(name = "wsgi-gateway", version = version(), about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the application until SIGTERM or SIGINT.
    #[command(
        after_help = "Every key a flag sets (in brackets) and every other one is \
        described in config/gateway.toml, the annotated reference configuration; \
        wsgi-gateway config prints the merged configuration with each value's source."
    )]
    Serve(ServeArgs),
    /// Check a configuration as `serve` would (files, layers, importing every app) and
    /// exit: 0 if it is valid, 2 with every problem found if not.
    Check(ConfigArgs),
    /// Print the merged configuration, each value with where it came from.
    Config(ConfigArgs),
    /// Convert a PasteDeploy .ini into a gateway.toml: urlmap -> routes, TransLogger,
    /// gzipper and htpasswd auth -> native layers, other filters and apps kept in Python.
    Convert(ConvertArgs),
}

/// Flags of `convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The PasteDeploy file, FILE.ini or FILE.ini#NAME. It is read with PasteDeploy from
    /// the Python of $VIRTUAL_ENV (as `serve` uses it); nothing of the stack is run.
    #[arg(value_name = "FILE.ini")]
    pub ini: String,
    /// The app, pipeline or composite to convert [default: main, or FILE.ini#NAME].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Write the configuration to this file instead of stdout (its relative paths are
    /// then relative to its folder).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Folders the apps import from, comma-separated [app.python_path]
    /// [default: the .ini's folder].
    #[arg(long, value_name = "DIRS")]
    pub pythonpath: Option<String>,
}

impl ConvertArgs {
    /// The file and the name: `--name`, else the `#NAME` of the file, else `main`.
    pub fn ini_and_name(&self) -> (PathBuf, String) {
        let (file, fragment) = match self.ini.rsplit_once('#') {
            Some((file, name)) if !name.is_empty() => (file, Some(name)),
            _ => (self.ini.trim_end_matches('#'), None),
        };
        let name = self
            .name
            .clone()
            .or(fragment.map(str::to_owned))
            .unwrap_or_else(|| "main".to_owned());
        (PathBuf::from(file), name)
    }

    /// `--pythonpath`, split.
    pub fn python_path(&self) -> Option<Vec<PathBuf>> {
        self.pythonpath
            .as_deref()
            .map(|dirs| split_list(dirs).into_iter().map(PathBuf::from).collect())
    }
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The application as MODULE:CALLABLE (sets app.wsgi), as gunicorn takes it.
    #[arg(id = "app_positional", value_name = "APP")]
    pub app: Option<String>,
    /// The configuration and what the flags override.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Development: restart the workers (a rolling reload, as SIGHUP) when a Python
    /// file of the app or the config file changes; a broken edit keeps the old workers.
    /// Not for production.
    #[arg(long, help_heading = "Development")]
    pub reload: bool,
}

/// The configuration file and the flags that override it (shared by every command).
#[derive(Debug, Args, Default)]
pub struct ConfigArgs {
    /// The config file (TOML). Default: ./gateway.toml if it exists.
    #[arg(
        short,
        long,
        env = "GATEWAY_CONFIG",
        value_name = "FILE",
        help_heading = "Config"
    )]
    pub config: Option<PathBuf>,

    /// The application as MODULE:CALLABLE [app.wsgi].
    #[arg(
        short,
        long,
        value_name = "MODULE:CALLABLE",
        help_heading = "Application"
    )]
    pub app: Option<String>,
    /// A PasteDeploy file, FILE.ini or FILE.ini#NAME [app.paste].
    #[arg(long, value_name = "FILE", help_heading = "Application")]
    pub paste: Option<String>,
    /// Change to this folder before importing the app [app.chdir].
    #[arg(long, value_name = "DIR", help_heading = "Application")]
    pub chdir: Option<String>,
    /// Folders put in front of sys.path, comma-separated [app.python_path].
    #[arg(long, value_name = "DIRS", help_heading = "Application")]
    pub pythonpath: Option<String>,
    /// Set an environment variable for the app; repeat for several.
    #[arg(short, long, value_name = "KEY=VALUE", help_heading = "Application")]
    pub env: Vec<String>,

    /// Address to listen on, HOST:PORT or unix:PATH; repeat for several [server.bind].
    #[arg(short, long, value_name = "ADDR", help_heading = "Server socket")]
    pub bind: Vec<String>,
    /// Pending connections the kernel queues [server.backlog].
    #[arg(long, value_name = "N", help_heading = "Server socket")]
    pub backlog: Option<u32>,
    /// Peers whose Forwarded / X-Forwarded-* headers are believed, comma-separated
    /// addresses or CIDR blocks, "*" for any, "unix" for unix-socket peers
    /// [server.forwarded_allow_ips].
    #[arg(long, value_name = "LIST", help_heading = "Server socket")]
    pub forwarded_allow_ips: Option<String>,

    /// Worker processes, or "auto" for one per core [server.workers].
    #[arg(short, long, value_name = "N|auto", help_heading = "Worker processes")]
    pub workers: Option<String>,
    /// Python threads per worker [server.threads].
    #[arg(long, value_name = "N", help_heading = "Worker processes")]
    pub threads: Option<usize>,
    /// Seconds until a request without a response gets 504 and its worker is
    /// replaced [server.timeout].
    #[arg(short, long, value_name = "SECONDS", help_heading = "Worker processes")]
    pub timeout: Option<f64>,
    /// Seconds requests in flight may take to finish on stop [server.graceful_timeout].
    #[arg(long, value_name = "SECONDS", help_heading = "Worker processes")]
    pub graceful_timeout: Option<f64>,
    /// Seconds an idle keep-alive connection is kept [server.keepalive_timeout].
    #[arg(long, value_name = "SECONDS", help_heading = "Worker processes")]
    pub keep_alive: Option<f64>,
    /// Replace a worker after this many requests [server.max_requests].
    #[arg(long, value_name = "N", help_heading = "Worker processes")]
    pub max_requests: Option<u64>,
    /// Add up to this many to max_requests, per worker [server.max_requests_jitter].
    #[arg(long, value_name = "N", help_heading = "Worker processes")]
    pub max_requests_jitter: Option<u64>,
    /// Write the supervisor's pid to this file [server.pidfile].
    #[arg(short, long, value_name = "FILE", help_heading = "Worker processes")]
    pub pid: Option<String>,

    /// Access log: "-" for stdout, or a file (adds an access_log layer).
    #[arg(long, value_name = "FILE", help_heading = "Logging")]
    pub access_logfile: Option<String>,
    /// Access log format: gunicorn atoms, "combined" or "json".
    #[arg(long, value_name = "FORMAT", help_heading = "Logging")]
    pub access_logformat: Option<String>,
    /// trace, debug, info, warn, error, off, or TARGET=LEVEL [telemetry.log_level].
    #[arg(long, value_name = "LEVEL", help_heading = "Logging")]
    pub log_level: Option<String>,

    /// TLS certificate chain (PEM): the --bind addresses speak TLS [server.tls.cert].
    #[arg(long, value_name = "FILE", help_heading = "SSL", requires = "keyfile")]
    pub certfile: Option<String>,
    /// TLS private key (PEM) [server.tls.key].
    #[arg(long, value_name = "FILE", help_heading = "SSL", requires = "certfile")]
    pub keyfile: Option<String>,
    /// CA certificates clients must present a certificate from [server.tls.client_ca].
    #[arg(long, value_name = "FILE", help_heading = "SSL", requires = "certfile")]
    pub ca_certs: Option<String>,

    /// Longest request line [limits.max_request_line].
    #[arg(long, value_name = "BYTES", help_heading = "Security")]
    pub limit_request_line: Option<usize>,
    /// Most header fields in a request [limits.max_header_count].
    #[arg(long, value_name = "N", help_heading = "Security")]
    pub limit_request_fields: Option<usize>,
    /// Longest header field [limits.max_header_size].
    #[arg(
        long = "limit-request-field_size",
        alias = "limit-request-field-size",
        value_name = "BYTES",
        help_heading = "Security"
    )]
    pub limit_request_field_size: Option<usize>,
}

impl ConfigArgs {
    /// The flags as configuration overrides.
    pub fn overrides(&self, positional_app: Option<&str>) -> CliOverrides {
        let mut flags = Flags::default();
        if let Some(app) = positional_app.or(self.app.as_deref()) {
            let flag = if positional_app.is_some() {
                "APP"
            } else {
                "--app"
            };
            flags.set(flag, "app.wsgi", app);
        }
        if let Some(paste) = &self.paste {
            flags.set("--paste", "app.paste", paste.as_str());
        }
        if let Some(dir) = &self.chdir {
            flags.set("--chdir", "app.chdir", dir.as_str());
        }
        if let Some(dirs) = &self.pythonpath {
            let dirs: Vec<String> = split_list(dirs);
            flags.set("--pythonpath", "app.python_path", dirs);
        }
        if !self.bind.is_empty() && self.certfile.is_none() {
            flags.set("--bind", "server.bind", self.bind.clone());
        }
        if let Some(backlog) = self.backlog {
            flags.set("--backlog", "server.backlog", backlog);
        }
        if let Some(ips) = &self.forwarded_allow_ips {
            flags.set(
                "--forwarded-allow-ips",
                "server.forwarded_allow_ips",
                split_list(ips),
            );
        }
        if let Some(workers) = &self.workers {
            match workers.parse::<usize>() {
                Ok(n) => flags.set("--workers", "server.workers", n),
                Err(_) => flags.set("--workers", "server.workers", workers.as_str()),
            }
        }
        if let Some(threads) = self.threads {
            flags.set("--threads", "server.threads", threads);
        }
        if let Some(seconds) = self.timeout {
            flags.set("--timeout", "server.timeout", seconds);
        }
        if let Some(seconds) = self.graceful_timeout {
            flags.set("--graceful-timeout", "server.graceful_timeout", seconds);
        }
        if let Some(seconds) = self.keep_alive {
            flags.set("--keep-alive", "server.keepalive_timeout", seconds);
        }
        if let Some(n) = self.max_requests {
            flags.set("--max-requests", "server.max_requests", n);
        }
        if let Some(n) = self.max_requests_jitter {
            flags.set("--max-requests-jitter", "server.max_requests_jitter", n);
        }
        if let Some(file) = &self.pid {
            flags.set("--pid", "server.pidfile", file.as_str());
        }
        if let Some(level) = &self.log_level {
            flags.set("--log-level", "telemetry.log_level", level.as_str());
        }
        if let (Some(cert), Some(key)) = (&self.certfile, &self.keyfile) {
            // As gunicorn: with a certificate, the --bind addresses speak TLS.
            let binds = if self.bind.is_empty() {
                vec!["127.0.0.1:8000".to_owned()]
            } else {
                self.bind.clone()
            };
            flags.set("--bind", "server.tls.bind", binds);
            flags.set("--bind", "server.bind", Vec::<String>::new());
            flags.set("--certfile", "server.tls.cert", cert.as_str());
            flags.set("--keyfile", "server.tls.key", key.as_str());
            if let Some(ca) = &self.ca_certs {
                flags.set("--ca-certs", "server.tls.client_ca", ca.as_str());
            }
        }
        if let Some(n) = self.limit_request_line {
            flags.set("--limit-request-line", "limits.max_request_line", n);
        }
        if let Some(n) = self.limit_request_fields {
            flags.set("--limit-request-fields", "limits.max_header_count", n);
        }
        if let Some(n) = self.limit_request_field_size {
            flags.set("--limit-request-field_size", "limits.max_header_size", n);
        }
        let access_log =
            (self.access_logfile.is_some() || self.access_logformat.is_some()).then(|| {
                AccessLogFlags {
                    output: self.access_logfile.clone(),
                    format: self.access_logformat.clone(),
                }
            });
        CliOverrides { flags, access_log }
    }

    /// `--env KEY=VALUE` pairs, or the first malformed one.
    pub fn environment(&self) -> Result<Vec<(String, String)>, String> {
        self.env
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
                _ => Err(format!("--env {pair:?}: expected KEY=VALUE")),
            })
            .collect()
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The config file to read: the one named, else `./gateway.toml` if present.
pub fn config_file(named: Option<PathBuf>) -> Option<PathBuf> {
    named.or_else(|| {
        let default = PathBuf::from("gateway.toml");
        default.is_file().then_some(default)
    })
}

/// `argv` with `serve` put in where it was left out (`wsgi-gateway app:app -w 4`).
pub fn with_default_command(argv: Vec<OsString>) -> Vec<OsString> {
    const COMMANDS: [&str; 5] = ["serve", "check", "config", "convert", "help"];
    const OWN_FLAGS: [&str; 4] = ["-h", "--help", "-V", "--version"];
    let first = argv.get(1).and_then(|a| a.to_str());
    match first {
        Some(first) if COMMANDS.contains(&first) || OWN_FLAGS.contains(&first) => argv,
        Some(_) => {
            let mut argv = argv;
            argv.insert(1, "serve".into());
            argv
        }
        None => argv,
    }
}

/// What to type instead of a gunicorn flag this command line does not take.
pub fn gunicorn_hint(flag: &str) -> Option<&'static str> {
    let name = flag.split('=').next().unwrap_or(flag);
    Some(match name {
        "-k" | "--worker-class" => {
            "there is one worker model: Python threads (--threads) over an async I/O runtime; drop it"
        }
        "--worker-connections" => "connections are not capped per worker; drop it",
        "-D" | "--daemon" => "run it under systemd, a container or a process manager instead",
        "-u" | "--user" | "-g" | "--group" => {
            "drop privileges with systemd's User=/Group= or the container's user"
        }
        "--preload" => "each worker imports the app itself; drop it",
        "--error-logfile" | "--log-file" | "--errorlog" => {
            "logs go to stderr; set telemetry.log_format = \"json\" for a collector"
        }
        "--capture-output" => {
            "with telemetry.log_format = \"json\", print() and logging output become log lines"
        }
        "--statsd-host" | "--statsd-prefix" | "--dogstatsd-tags" => {
            "metrics: /metrics on telemetry.admin_bind (Prometheus) or OTLP (telemetry.otlp_endpoint)"
        }
        "--check-config" => "use `wsgi-gateway check`",
        "--print-config" => "use `wsgi-gateway config`",
        "--reuse-port" => "workers share the supervisor's sockets; drop it",
        "--proxy-protocol" => "set server.proxy_protocol = true in the config",
        "--proxy-allow-from" => "use --forwarded-allow-ips (it also governs the PROXY protocol)",
        "--ssl-version" | "--ciphers" | "--do-handshake-on-connect" | "--suppress-ragged-eofs" => {
            "TLS is 1.2 and 1.3 with rustls' defaults; nothing to set"
        }
        "--keyfile-password" => "use an unencrypted key file readable by the gateway only",
        "-n" | "--name" | "--proc-name" => "process titles are not set; drop it",
        "--reload-engine" | "--reload-extra-file" => "--reload watches the app's .py files and the config",
        "--log-config" | "--log-config-dict" | "--log-syslog" => {
            "set telemetry.log_level and telemetry.log_format in the config"
        }
        "--umask" => "set unix_socket_mode for socket files; drop it",
        "--initgroups" | "--chroot" => "use systemd or the container for that",
        "--spew" => "no equivalent",
        "--limit-request-field-size" => "it is spelled --limit-request-field_size, as in gunicorn",
        "--bind-unix" => "use --bind unix:/path/to.sock",
        _ => return None,
    })
}

/// `--version`: the gateway's version and the Python it runs, e.g.
/// `0.1.0 (Python 3.12.1)` (clap puts the name in front).
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (Python {})",
            env!("CARGO_PKG_VERSION"),
            crate::wsgi::interpreter::python_version()
        )
    })
}
