//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{CliApp, CliOverrides, CliServer};

/// Serve a Python WSGI application (PEP 3333): HTTP/1.1 and HTTP/2 in front, embedded
/// CPython behind, one pipeline of native and Python middleware in between.
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
    Serve(ServeArgs),
    /// Validate a configuration and exit: 0 if it is valid, 2 with the problem if not.
    Check(CheckArgs),
}

/// Flags of `serve`. Each overrides the config file and `GATEWAY_*` variables.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file (TOML). Default: ./gateway.toml if it exists.
    #[arg(short, long, env = "GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The application as MODULE:CALLABLE (sets app.wsgi).
    #[arg(short, long, value_name = "MODULE:CALLABLE")]
    pub app: Option<String>,
    /// Address to listen on, HOST:PORT; repeat for several (sets server.bind).
    #[arg(short, long, value_name = "ADDR")]
    pub bind: Vec<String>,
    /// Worker processes (sets server.workers).
    #[arg(short, long, value_name = "N")]
    pub workers: Option<usize>,
    /// Python threads per worker (sets server.threads).
    #[arg(short, long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file (TOML) to validate.
    #[arg(short, long, env = "GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ServeArgs {
    /// The flags as config overrides.
    pub fn overrides(&self) -> CliOverrides {
        let server = CliServer {
            bind: (!self.bind.is_empty()).then(|| self.bind.clone()),
            workers: self.workers,
            threads: self.threads,
        };
        let has_server =
            server.bind.is_some() || server.workers.is_some() || server.threads.is_some();
        CliOverrides {
            server: has_server.then_some(server),
            app: self.app.clone().map(|wsgi| CliApp { wsgi: Some(wsgi) }),
        }
    }
}

/// The config file to read: the one named, else `./gateway.toml` if present.
pub fn config_file(named: Option<PathBuf>) -> Option<PathBuf> {
    named.or_else(|| {
        let default = PathBuf::from("gateway.toml");
        default.is_file().then_some(default)
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
