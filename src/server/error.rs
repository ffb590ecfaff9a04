//! The one error type of the server module.

/// Why the listeners could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// An inherited listener could not be moved onto the runtime.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Which listener.
        address: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}
