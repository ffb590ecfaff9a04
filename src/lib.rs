//! wsgi-gateway: serve Python WSGI applications (PEP 3333) from one Rust process.
//!
//! # Layout
//! Each module uses only those above it in this list (`types` and `config` are leaves):
//! - [`types`]: leaf types shared by everyone: the boxed service, connection facts,
//!   the TLS session, the one error response.
//! - [`config`]: `gateway.toml`, environment and flags merged with figment into plain,
//!   typed data (addresses, CIDR blocks, app specs parsed at load).
//! - [`telemetry`]: logging and trace export.
//! - [`metrics`]: request and process metrics in shared memory, summed across workers.
//! - [`wsgi`]: embedded CPython, the Python thread pool and the PEP 3333 contract.
//! - [`proxy`]: the reverse proxy: upstream pools, balancing, health, retries.
//! - [`pipeline`]: configuration in, one tower service out, ending in the application.
//! - [`server`]: sockets only: accept, TLS, PROXY protocol, the framing check, hyper,
//!   draining.
//! - [`startup`]: the one start-up step that checks and builds what the configuration
//!   names (certificates, files, layers), used by `serve` and `check`.
//! - [`workers`]: the supervisor process and a worker's life (serve, recycle, drain).
//! - [`convert`]: `wsgi-gateway convert`, a PasteDeploy `.ini` read by PasteDeploy in
//!   the embedded interpreter ([`wsgi`]) and written out as a gateway.toml.
//! - [`cli`]: flags and subcommands; [`run`] is what the binary calls.
//! - `extension` (feature `extension-module`): the Python extension module
//!   `wsgi_gateway._gateway` that `pip install` builds; it calls [`run`] too.
//!
//! # Life of a request
//! ```text
//! socket -> framing check -> hyper -> [pipeline layers] -> WsgiService
//!        -> Python pool thread: app(environ, start_response) -> iterable
//!        -> oneshot (head) + bounded channel (body) -> hyper -> socket
//! ```

pub mod cli;
pub mod config;
pub mod convert;
#[cfg(feature = "extension-module")]
mod extension;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod types;
pub mod workers;
pub mod wsgi;

use std::process::ExitCode;

use cli::{config_file, Cli, Command};
use config::{CliOverrides, ConfigError, LoadedConfig};
use workers::WorkerHandoff;

/// Exit status of a configuration error (as `check` documents).
const EXIT_CONFIG: u8 = 2;

/// Parse `argv` (with `serve` implied when no command is named) and run it. A gunicorn
/// flag this command line does not take is answered with what to use instead.
pub fn main_with_args(argv: Vec<std::ffi::OsString>) -> ExitCode {
    use clap::Parser;
    match Cli::try_parse_from(cli::with_default_command(argv)) {
        Ok(cli) => run(cli),
        Err(error) => {
            let hint = match error.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(flag)) => cli::gunicorn_hint(flag),
                _ => None,
            };
            let _ = error.print();
            if let Some(hint) = hint {
                eprintln!("\nwsgi-gateway: coming from gunicorn? {hint}");
            }
            ExitCode::from(error.exit_code().clamp(0, 255) as u8)
        }
    }
}

/// Run the command line: `check`, `config` or `serve` (as the supervisor, or as a
/// worker when the supervisor's handoff is in the environment).
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Config(args) => print_config(&args),
        Command::Convert(args) => convert(&args),
        Command::Serve(args) => {
            let environment = match args.config.environment() {
                Ok(pairs) => pairs,
                Err(message) => return config_failure(&ConfigError::Parse(message)),
            };
            for (key, value) in environment {
                // SAFETY of intent: no other thread exists yet; the app sees it.
                std::env::set_var(key, value);
            }
            let file = config_file(args.config.config.clone());
            let overrides = args.config.overrides(args.app.as_deref());
            let (loaded, prepared) = match load_and_prepare(file.as_deref(), &overrides) {
                Ok(ready) => ready,
                Err(error) => return config_failure(&error),
            };
            // Read (and remove) the supervisor's handoff before any other thread exists.
            let handoff = WorkerHandoff::from_env();
            if handoff.is_none() {
                warn_unused_variables();
            }
            serve(loaded, prepared, handoff, args.reload)
        }
    }
}

/// `check`: every start-up check `serve` runs, then import every application (and
/// build its Python middleware) as a worker would, and exit.
fn check(args: &cli::ConfigArgs) -> ExitCode {
    warn_unused_variables();
    let file = config_file(args.config.clone());
    let (loaded, prepared) = match load_and_prepare(file.as_deref(), &args.overrides(None)) {
        Ok(ready) => ready,
        Err(error) => return config_failure(&error),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wsgi-gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Nothing is served: the timeouts are built only to load the apps as a worker does.
    let timeout = pipeline::AppTimeoutLayer::new(
        loaded.config.server.queue_timeout,
        loaded.config.server.timeout,
        std::sync::Arc::new(|_| {}),
    );
    if let Err(error) = workers::load_apps(&prepared, runtime.handle().clone(), &timeout) {
        eprintln!("wsgi-gateway: the application does not load:\n{error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let from = loaded.file.map(|f| f.display().to_string());
    println!(
        "configuration OK ({}); {} loaded",
        from.as_deref().unwrap_or("defaults"),
        prepared.apps.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    // Python threads may be parked; exit without finalising the interpreter.
    std::process::exit(0)
}

/// `convert`: the gateway.toml to stdout (or `--output`), and on stderr what stays in
/// Python; 2 when the `.ini` cannot be read.
fn convert(args: &cli::ConvertArgs) -> ExitCode {
    let (ini, name) = args.ini_and_name();
    let request = convert::ConvertRequest {
        ini,
        name,
        output: args.output.clone(),
        python_path: args.python_path(),
        force: args.force,
    };
    match convert::convert(&request) {
        Ok(converted) => {
            if request.output.is_none() {
                print!("{}", converted.toml);
            }
            for line in &converted.warnings {
                eprintln!("wsgi-gateway convert: {line}");
            }
            if let Some(output) = &request.output {
                eprintln!("wsgi-gateway convert: wrote {}", output.display());
            }
            // Python may hold threads of its own; exit without finalising it.
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(0)
        }
        Err(error) => {
            eprintln!("wsgi-gateway convert: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `config`: the merged configuration, one key per line, with where it came from.
fn print_config(args: &cli::ConfigArgs) -> ExitCode {
    warn_unused_variables();
    let file = config_file(args.config.clone());
    match config::load(file.as_deref(), &args.overrides(None)) {
        Ok(loaded) => {
            print!("{}", loaded.describe());
            ExitCode::SUCCESS
        }
        Err(error) => config_failure(&error),
    }
}

fn warn_unused_variables() {
    for warning in config::unused_variables() {
        eprintln!("wsgi-gateway: warning: {warning}");
    }
}

/// Load the configuration and run the start-up checks.
fn load_and_prepare(
    file: Option<&std::path::Path>,
    overrides: &CliOverrides,
) -> Result<(LoadedConfig, startup::Prepared), ConfigError> {
    let loaded = config::load(file, overrides)?;
    let prepared = startup::prepare(&loaded)?;
    Ok((loaded, prepared))
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("wsgi-gateway: invalid configuration:\n{error}");
    ExitCode::from(EXIT_CONFIG)
}

/// Start the runtime and logging, then supervise or work.
fn serve(
    loaded: LoadedConfig,
    prepared: startup::Prepared,
    handoff: Option<WorkerHandoff>,
    reload: bool,
) -> ExitCode {
    // A current-thread runtime for io_threads = 1 was measured against this (same
    // binary, alternating, bench/RESULTS.md): no difference beyond the noise.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loaded.config.server.io_threads)
        .thread_name("io")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wsgi-gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = {
        let _context = runtime.enter();
        telemetry::init(&loaded.config.telemetry)
    };
    let telemetry = match telemetry {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("wsgi-gateway: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = match handoff {
        // The supervisor: binds, runs the workers, keeps them alive. What it prepared
        // was only a check; each worker builds its own.
        None => {
            if reload {
                // The folders the workers import the apps from, and the config file.
                workers::reload::watch(prepared.python.python_path.clone(), loaded.file.clone());
            }
            drop(prepared);
            let pidfile = loaded.config.server.pidfile.clone();
            if let Some(path) = &pidfile {
                if let Err(error) = std::fs::write(path, format!("{}\n", std::process::id())) {
                    tracing::error!("server.pidfile {}: {error}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
            let code = match runtime.block_on(workers::supervise(loaded)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error}");
                    ExitCode::FAILURE
                }
            };
            if let Some(path) = &pidfile {
                let _ = std::fs::remove_file(path);
            }
            code
        }
        Some(handoff) => match runtime.block_on(workers::worker::run(loaded, prepared, handoff)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                // Logging is up by now: the error goes where operators look.
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        },
    };
    // Flush spans while the runtime (which the gRPC exporter uses) still runs: the
    // flush blocks, so it runs on a blocking thread while the runtime is driven.
    runtime.block_on(async move {
        let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
    });
    // Python threads may still be parked; the process exits without finalising the
    // interpreter, as gunicorn workers do.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}
