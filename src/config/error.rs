//! The one error type of the config module.

use std::path::PathBuf;

/// A configuration problem, reported before anything is bound or imported.
///
/// Every variant says which key is wrong and where its value came from, so the
/// message alone is enough to fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file named with `--config` does not exist or cannot be read.
    #[error("config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A value could not be parsed (wrong type, unknown key, bad syntax).
    #[error("{0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("{key}: {message} (from {origin})")]
    Invalid {
        key: String,
        message: String,
        origin: String,
    },
}
