//! The one error type of the WSGI bridge.

/// What can go wrong between the gateway and the Python application.
#[derive(Debug, thiserror::Error)]
pub enum WsgiError {
    /// The interpreter could not be started.
    #[error("cannot start the Python interpreter: {0}")]
    Interpreter(String),
    /// The virtualenv is missing or made for another Python.
    #[error("app.virtualenv {path}: {message}")]
    Virtualenv {
        /// The virtualenv's folder.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The application could not be imported or is not callable; carries the traceback.
    #[error("cannot load the WSGI application {spec:?}:\n{traceback}")]
    AppImport {
        /// The application as configured.
        spec: String,
        /// The Python traceback (or what is wrong).
        traceback: String,
    },
    /// A Python middleware could not be imported or built; carries the traceback.
    #[error("middleware[{entry}]: cannot build Python middleware {spec:?}:\n{traceback}")]
    Middleware {
        /// Its position in `[[middleware]]`.
        entry: usize,
        /// The factory as configured.
        spec: String,
        /// The Python traceback (or what is wrong).
        traceback: String,
    },
    /// The Python thread pool is gone (the gateway is shutting down).
    #[error("the Python thread pool has stopped")]
    PoolClosed,
}
