//! [`ConvertError`]: why a `.ini` could not be converted.

use std::path::PathBuf;

/// Why `wsgi-gateway convert` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The `.ini` file is not there.
    #[error("{}: no such file", .0.display())]
    NoFile(PathBuf),
    /// The output file exists and `--force` was not given.
    #[error("{}: exists (pass --force to replace it)", .0.display())]
    OutputExists(PathBuf),
    /// The output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The embedded interpreter could not start.
    #[error("{0}")]
    Interpreter(String),
    /// PasteDeploy is not importable in the interpreter.
    #[error(
        "PasteDeploy is not importable ({python}): run convert with VIRTUAL_ENV set to a \
         virtualenv that has it (pip install PasteDeploy)"
    )]
    NoPasteDeploy {
        /// Which Python was searched.
        python: String,
    },
    /// PasteDeploy could not resolve the stack (a missing section, an unknown egg...).
    #[error("PasteDeploy cannot load {spec}:\n{message}")]
    Paste {
        /// `file.ini#name`.
        spec: String,
        /// The loader's message (or the traceback of an unexpected error).
        message: String,
    },
    /// PasteDeploy resolved something the converter does not know how to read.
    #[error("{0}")]
    Unsupported(String),
}
