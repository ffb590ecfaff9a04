//! Processes: the supervisor and the workers it runs.
//!
//! `wsgi-gateway serve` starts as the supervisor ([`supervise`]), which binds the
//! listeners and runs `server.workers` copies of itself as workers; a worker finds its
//! [`WorkerHandoff`] in the environment and serves with [`worker::run`] until it is told
//! to stop. A worker that should be recycled ([`recycle`]) asks the supervisor for a
//! replacement and keeps serving until that one is ready.

pub mod admin;
mod apps;
mod error;
mod handoff;
pub mod launch;
pub mod recycle;
pub mod reload;
mod stop_signals;
mod supervisor;
pub mod worker;

pub use apps::load as load_apps;
pub use error::WorkersError;
pub use handoff::WorkerHandoff;
pub use supervisor::supervise;
