//! The `wsgi-gateway` binary: parse flags, load config, start logging, run the library.

use std::process::ExitCode;

use clap::Parser;
use wsgi_gateway::cli::{config_file, Cli, Command};
use wsgi_gateway::config::{self, CliOverrides};
use wsgi_gateway::server::Stopped;
use wsgi_gateway::workers::{WorkerHandoff, EXIT_RECYCLE};

/// mimalloc: the I/O thread allocates per request (hyper buffers, boxed futures), and
/// glibc's malloc showed up at about 5% of its time in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => {
            let file = config_file(args.config);
            match config::load(file.as_deref(), &CliOverrides::default()) {
                Ok(loaded) => {
                    let from = loaded.file.map(|f| f.display().to_string());
                    println!(
                        "configuration OK ({})",
                        from.as_deref().unwrap_or("defaults")
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("wsgi-gateway: invalid configuration:\n{error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve(args) => {
            let file = config_file(args.config.clone());
            let loaded = match config::load(file.as_deref(), &args.overrides()) {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("wsgi-gateway: invalid configuration:\n{error}");
                    return ExitCode::from(2);
                }
            };
            // Read (and remove) the supervisor's handoff before any other thread exists.
            let handoff = WorkerHandoff::from_env();
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
                wsgi_gateway::telemetry::init(&loaded.config.telemetry)
            };
            let telemetry = match telemetry {
                Ok(guard) => guard,
                Err(error) => {
                    eprintln!("wsgi-gateway: {error}");
                    return ExitCode::from(2);
                }
            };
            let code = match handoff {
                // The supervisor: binds, runs the workers, keeps them alive.
                None => match runtime.block_on(wsgi_gateway::workers::supervise(loaded)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        tracing::error!("{error}");
                        ExitCode::FAILURE
                    }
                },
                Some(handoff) => {
                    match runtime.block_on(wsgi_gateway::server::run(loaded, handoff)) {
                        Ok(Stopped::Signal) => ExitCode::SUCCESS,
                        Ok(Stopped::Recycle) => ExitCode::from(EXIT_RECYCLE as u8),
                        Err(error) => {
                            // Logging is up by now: the error goes where operators look.
                            tracing::error!("{error}");
                            ExitCode::FAILURE
                        }
                    }
                }
            };
            // Flush spans while the runtime (which the gRPC exporter uses) still runs.
            {
                let _context = runtime.enter();
                drop(telemetry);
            }
            // Python threads may still be parked; the process exits without
            // finalising the interpreter, as gunicorn workers do.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            code
        }
    }
}
