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
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A value could not be parsed (wrong type, unknown key, bad syntax).
    #[error("{0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("{key}: {message} (from {origin})")]
    Invalid {
        /// The key, as the README writes it (`server.bind`, `route[2].app`).
        key: String,
        /// What is wrong.
        message: String,
        /// The file, variable or flag the value came from.
        origin: String,
    },
    /// Several problems, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// Ok when `problems` is empty, the one problem, or all of them.
    pub fn all(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Several(problems)),
        }
    }
}
