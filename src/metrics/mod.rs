//! Request and process metrics, counted per worker and summed by the supervisor.
//!
//! ```text
//! worker: RequestMeter -> WorkerMetrics (atomics in a memfd mapping, no lock)
//! supervisor: MetricsHub sums live regions + exited workers' totals -> Snapshot
//!             -> Prometheus text on the admin listener (/metrics)
//!             -> OTLP (gRPC or HTTP/protobuf) every telemetry.metrics_interval
//! ```
//!
//! Metrics (OpenTelemetry names; Prometheus names in [`prometheus`]):
//! `http.server.request.duration`, `http.server.request.body.size`,
//! `http.server.response.body.size` (histograms by method, status, scheme, protocol
//! version), `http.server.active_requests`, `wsgi_gateway.python.threads.busy`,
//! `wsgi_gateway.python.threads`, `wsgi_gateway.python.queue.depth`,
//! `wsgi_gateway.workers` and `wsgi_gateway.worker.restarts` (by reason).

mod aggregate;
mod layout;
mod meter_layer;
pub mod otlp;
pub mod prometheus;
mod region;
mod request;

pub use aggregate::{MetricsHub, RestartReason, Snapshot};
pub use layout::WorkerMetrics;
pub use meter_layer::{MeterLayer, MeteredBody};
pub use region::Region;
pub use request::{install, worker, MeteredRequestBody, RequestMeter};

/// Why metrics could not be set up or exported.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The shared memory could not be created or mapped.
    #[error("metrics: shared memory: {0}")]
    Region(std::io::Error),
    /// The inherited region was made by a binary with another layout.
    #[error("metrics: the supervisor's metrics region has another layout (a reload onto a different build?)")]
    Layout,
    /// An OTLP export failed.
    #[error("OTLP metrics export to {0}")]
    Export(String),
}
