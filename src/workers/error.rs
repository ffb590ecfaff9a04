//! The one error type of the workers module.

use std::time::Duration;

/// Why the supervisor or a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A worker process could not be started at all.
    #[error("cannot start a worker process: {0}")]
    Spawn(std::io::Error),
    /// The first workers did not come up (the application failed to load).
    #[error("worker {slot} did not start; its error is in the log")]
    StartupFailed {
        /// The worker's slot.
        slot: usize,
    },
    /// Workers keep crashing.
    #[error(
        "{crashes} worker crashes in {window:?}: stopping instead of restarting them in a loop"
    )]
    CrashLoop {
        /// How many crashes.
        crashes: usize,
        /// Within how long.
        window: Duration,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The application could not be loaded (in a worker).
    #[error(transparent)]
    App(#[from] crate::wsgi::WsgiError),
    /// The inherited listeners could not be served (in a worker).
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
}
