//! `[telemetry]`: how the gateway logs.

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
    /// OTLP endpoint for traces, e.g. `"http://collector:4317"` (gRPC) or
    /// `"http://collector:4318/v1/traces"` (HTTP). Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (or `..._TRACES_ENDPOINT`) if set, else no tracing.
    pub otlp_endpoint: Option<String>,
    /// `"grpc"` or `"http/protobuf"`. Unset: `OTEL_EXPORTER_OTLP_PROTOCOL`, else grpc.
    pub otlp_protocol: Option<String>,
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
        }
    }
}
