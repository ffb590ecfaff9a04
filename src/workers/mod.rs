//! Processes: the supervisor and what a worker inherits from it.
//!
//! `wsgi-gateway serve` starts as the supervisor ([`supervise`]), which runs
//! `server.workers` copies of itself as workers; a worker finds its [`WorkerHandoff`]
//! in the environment and serves with [`crate::server::run`].

pub mod admin;
mod handoff;
mod supervisor;

pub use handoff::{WorkerHandoff, EXIT_RECYCLE};
pub use supervisor::{supervise, SupervisorError};
