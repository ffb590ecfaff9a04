//! wsgi-gateway: serve Python WSGI applications (PEP 3333) from one Rust process.
//!
//! # Layout
//! - [`cli`]: flags and subcommands.
//! - [`config`]: `gateway.toml`, environment and flags merged with figment, validated.
//! - [`server`]: listeners, connections (hyper HTTP/1.1 and HTTP/2), limits, draining.
//! - [`pipeline`]: configuration in, one tower service out, ending in the application.
//! - [`wsgi`]: embedded CPython, the Python thread pool and the PEP 3333 contract.
//! - [`workers`]: the supervisor process and the worker processes it runs.
//! - [`metrics`]: request and process metrics, summed across workers.
//! - [`types`]: leaf types shared by everyone (the boxed service, connection facts, the
//!   one error response).
//! - [`telemetry`]: logging setup.
//!
//! # Life of a request
//! ```text
//! socket -> framing check -> hyper -> [pipeline layers] -> WsgiService
//!        -> Python pool thread: app(environ, start_response) -> iterable
//!        -> oneshot (head) + bounded channel (body) -> hyper -> socket
//! ```

pub mod cli;
pub mod config;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod telemetry;
pub mod types;
pub mod workers;
pub mod wsgi;
