//! `[telemetry]`: logs, the admin listener, and OTLP export.

use serde::{Deserialize, Serialize};

/// Log output settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Log filter in `RUST_LOG` syntax, e.g. `"info"` or `"info,wsgi_gateway::server=debug"`.
    /// `RUST_LOG` in the environment overrides it.
    pub log_level: String,
    /// `"text"` for people, `"json"` for log collectors.
    pub log_format: LogFormat,
    /// `"HOST:PORT"` of the admin listener (`/healthz`, `/readyz`), never routed into
    /// the application. Unset: no admin listener.
    pub admin_bind: Option<String>,
    /// OTLP collector for traces and metrics, e.g. `"http://collector:4317"` (gRPC) or
    /// `"http://collector:4318"` (HTTP; `/v1/traces` and `/v1/metrics` are appended).
    /// Unset: the `OTEL_EXPORTER_OTLP_*ENDPOINT` variables if set, else no export.
    pub otlp_endpoint: Option<String>,
    /// `"grpc"` or `"http/protobuf"`. Unset: `OTEL_EXPORTER_OTLP_PROTOCOL`, else grpc.
    pub otlp_protocol: Option<String>,
    /// `service.name` of exported traces and metrics. `OTEL_SERVICE_NAME` overrides it;
    /// unset: `wsgi-gateway` (or a `service.name` in `OTEL_RESOURCE_ATTRIBUTES`).
    pub service_name: Option<String>,
    /// How often metrics are exported over OTLP. Unset: `OTEL_METRIC_EXPORT_INTERVAL`
    /// (milliseconds), else 60s.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Option<std::time::Duration>,
}

/// The shape of log lines.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            admin_bind: None,
            otlp_endpoint: None,
            otlp_protocol: None,
            service_name: None,
            metrics_interval: None,
        }
    }
}
