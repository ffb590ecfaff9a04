//! The one error type of the server module.

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The application could not be loaded.
    #[error(transparent)]
    App(#[from] crate::wsgi::WsgiError),
    /// A middleware entry could not be built.
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}
