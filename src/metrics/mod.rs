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
//! `wsgi_gateway.workers` and `wsgi_gateway.worker.restarts` (by reason); per upstream
//! server: `wsgi_gateway.upstream.requests` (by outcome), `wsgi_gateway.upstream.duration`
//! (to the response head), `wsgi_gateway.upstream.active_requests` and
//! `wsgi_gateway.upstream.healthy` (workers that consider the server healthy).

mod aggregate;
mod layout;
mod meter_layer;
pub mod otlp;
pub mod prometheus;
mod region;
mod request;
mod upstream;

pub use aggregate::{MetricsHub, RestartReason, Snapshot, UpstreamTotals};
pub use layout::WorkerMetrics;
pub use meter_layer::{MeterLayer, MeteredBody};
pub use region::Region;
pub use request::{install, worker, MeteredRequestBody, RequestMeter};
pub use upstream::{UpstreamMeter, UpstreamOutcome, UpstreamReading, OUTCOMES};

/// The meter of one upstream server in this worker's region (None when every slot is
/// taken: that server is then not counted).
pub fn upstream_meter(upstream: &str, server: &str) -> Option<UpstreamMeter> {
    match worker().upstream_slot(upstream, server) {
        Some(slot) => Some(UpstreamMeter::new(slot)),
        None => {
            tracing::warn!(
                upstream,
                server,
                "no metrics slot left for this upstream server: not counted"
            );
            None
        }
    }
}

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
