//! The one error type of the WSGI bridge.

/// What can go wrong between the gateway and the Python application.
#[derive(Debug, thiserror::Error)]
pub enum WsgiError {
    /// The interpreter could not be started.
    #[error("cannot start the Python interpreter: {0}")]
    Interpreter(String),
    /// The virtualenv is missing or made for another Python.
    #[error("app.virtualenv {path}: {message}")]
    Virtualenv { path: String, message: String },
    /// The application could not be imported or is not callable; carries the traceback.
    #[error("cannot load the WSGI application {spec:?}:\n{traceback}")]
    AppImport { spec: String, traceback: String },
    /// A Python middleware could not be imported or built; carries the traceback.
    #[error("middleware[{entry}]: cannot build Python middleware {spec:?}:\n{traceback}")]
    Middleware {
        entry: usize,
        spec: String,
        traceback: String,
    },
    /// The Python thread pool is gone (the gateway is shutting down).
    #[error("the Python thread pool has stopped")]
    PoolClosed,
}
