//! Processes: the supervisor and the workers it runs.
//!
//! `wsgi-gateway serve` starts as the supervisor ([`supervise`]), which binds the
//! listeners and runs `server.workers` copies of itself as workers; a worker finds its
//! [`WorkerHandoff`] in the environment and serves with [`worker::run`] until it is told
//! to stop or asks to be recycled ([`recycle`]).

pub mod admin;
mod apps;
mod error;
mod handoff;
pub mod launch;
pub mod recycle;
mod supervisor;
pub mod worker;

pub use error::WorkersError;
pub use handoff::{WorkerHandoff, EXIT_RECYCLE};
pub use supervisor::supervise;
pub use worker::Stopped;
