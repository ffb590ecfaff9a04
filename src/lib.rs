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
//! - [`pipeline`]: configuration in, one tower service out, ending in the application.
//! - [`server`]: sockets only: accept, TLS, PROXY protocol, the framing check, hyper,
//!   draining.
//! - [`startup`]: the one start-up step that checks and builds what the configuration
//!   names (certificates, files, layers), used by `serve` and `check`.
//! - [`workers`]: the supervisor process and a worker's life (serve, recycle, drain).
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
#[cfg(feature = "extension-module")]
mod extension;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod types;
pub mod workers;
pub mod wsgi;

use std::process::ExitCode;

use cli::{config_file, Cli, Command};
use config::{CliOverrides, ConfigError, LoadedConfig};
use workers::{Stopped, WorkerHandoff, EXIT_RECYCLE};

/// Exit status of a configuration error (as `check` documents).
const EXIT_CONFIG: u8 = 2;

/// Run the command line: `check` or `serve` (as the supervisor, or as a worker when the
/// supervisor's handoff is in the environment).
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(args) => {
            let file = config_file(args.config);
            match load_and_prepare(file.as_deref(), &CliOverrides::default()) {
                Ok((loaded, _)) => {
                    let from = loaded.file.map(|f| f.display().to_string());
                    println!(
                        "configuration OK ({})",
                        from.as_deref().unwrap_or("defaults")
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => config_failure(&error),
            }
        }
        Command::Serve(args) => {
            let file = config_file(args.config.clone());
            let (loaded, prepared) = match load_and_prepare(file.as_deref(), &args.overrides()) {
                Ok(ready) => ready,
                Err(error) => return config_failure(&error),
            };
            // Read (and remove) the supervisor's handoff before any other thread exists.
            let handoff = WorkerHandoff::from_env();
            serve(loaded, prepared, handoff)
        }
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
) -> ExitCode {
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
            drop(prepared);
            match runtime.block_on(workers::supervise(loaded)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(handoff) => match runtime.block_on(workers::worker::run(loaded, prepared, handoff)) {
            Ok(Stopped::Signal) => ExitCode::SUCCESS,
            Ok(Stopped::Recycle) => ExitCode::from(EXIT_RECYCLE as u8),
            Err(error) => {
                // Logging is up by now: the error goes where operators look.
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        },
    };
    // Flush spans while the runtime (which the gRPC exporter uses) still runs.
    {
        let _context = runtime.enter();
        drop(telemetry);
    }
    // Python threads may still be parked; the process exits without finalising the
    // interpreter, as gunicorn workers do.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}
