//! Where OTLP data goes: `[telemetry]` first, then the standard `OTEL_EXPORTER_OTLP_*`
//! variables, resolved per signal as the OpenTelemetry specification describes.
//!
//! - gRPC: the endpoint is used as given (`http://collector:4317`).
//! - HTTP/protobuf: a base endpoint (`telemetry.otlp_endpoint` or
//!   `OTEL_EXPORTER_OTLP_ENDPOINT`) gets the signal's path appended (`/v1/traces`,
//!   `/v1/metrics`); a signal-specific variable (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`)
//!   is used as given.
//! - `OTEL_TRACES_EXPORTER=none` / `OTEL_METRICS_EXPORTER=none` turn a signal off.

use crate::config::TelemetryConfig;

/// A kind of telemetry exported over OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
}

impl Signal {
    fn env_name(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
        }
    }
}

/// The wire protocol of an OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC.
    Grpc,
    /// OTLP protobuf messages POSTed over HTTP.
    HttpProtobuf,
}

/// Where and how one signal is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    /// The wire protocol.
    pub protocol: Protocol,
    /// The endpoint URL (for HTTP, the full URL including the signal's path).
    pub endpoint: String,
}

/// Why a target could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("unknown OTLP protocol {0:?} in telemetry.otlp_protocol or OTEL_EXPORTER_OTLP_*PROTOCOL: use grpc or http/protobuf")]
pub struct UnknownProtocol(pub String);

/// The target for `signal`, or None when it is not configured (or turned off).
pub fn resolve(
    config: &TelemetryConfig,
    signal: Signal,
) -> Result<Option<OtlpTarget>, UnknownProtocol> {
    resolve_with(config, signal, |name| {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    })
}

fn resolve_with(
    config: &TelemetryConfig,
    signal: Signal,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<OtlpTarget>, UnknownProtocol> {
    let kind = signal.env_name();
    if env(&format!("OTEL_{kind}_EXPORTER")).as_deref() == Some("none") {
        return Ok(None);
    }
    let protocol = config
        .otlp_protocol
        .clone()
        .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{kind}_PROTOCOL")))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "grpc".into());
    let protocol = match protocol.as_str() {
        "grpc" => Protocol::Grpc,
        "http/protobuf" => Protocol::HttpProtobuf,
        other => return Err(UnknownProtocol(other.into())),
    };
    let base = |base: String| match protocol {
        Protocol::Grpc => base,
        Protocol::HttpProtobuf => {
            let base = base.trim_end_matches('/');
            // Tolerate a base given with a signal's path already on it.
            let base = base
                .strip_suffix(Signal::Traces.path())
                .or_else(|| base.strip_suffix(Signal::Metrics.path()))
                .unwrap_or(base);
            format!("{base}{}", signal.path())
        }
    };
    let endpoint = match (
        config.otlp_endpoint.clone(),
        env(&format!("OTEL_EXPORTER_OTLP_{kind}_ENDPOINT")),
        env("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(configured), _, _) => base(configured),
        (None, Some(specific), _) => specific,
        (None, None, Some(generic)) => base(generic),
        (None, None, None) => return Ok(None),
    };
    Ok(Some(OtlpTarget { protocol, endpoint }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_env(
        config: &TelemetryConfig,
        signal: Signal,
        vars: &[(&str, &str)],
    ) -> Option<OtlpTarget> {
        resolve_with(config, signal, |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
        .unwrap()
    }

    #[test]
    fn http_bases_get_the_signal_path() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/".into()),
            otlp_protocol: Some("http/protobuf".into()),
            ..TelemetryConfig::default()
        };
        let metrics = resolve_env(&config, Signal::Metrics, &[]).unwrap();
        assert_eq!(metrics.endpoint, "http://collector:4318/v1/metrics");
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/v1/traces".into()),
            ..config
        };
        let traces = resolve_env(&config, Signal::Traces, &[]).unwrap();
        assert_eq!(traces.endpoint, "http://collector:4318/v1/traces");
        let metrics = resolve_env(&config, Signal::Metrics, &[]).unwrap();
        assert_eq!(metrics.endpoint, "http://collector:4318/v1/metrics");
    }

    #[test]
    fn the_environment_follows_the_specification() {
        let config = TelemetryConfig::default();
        assert_eq!(resolve_env(&config, Signal::Metrics, &[]), None);
        let grpc = resolve_env(
            &config,
            Signal::Metrics,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")],
        )
        .unwrap();
        assert_eq!(
            (grpc.protocol, grpc.endpoint.as_str()),
            (Protocol::Grpc, "http://c:4317")
        );
        let http = resolve_env(
            &config,
            Signal::Metrics,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
        )
        .unwrap();
        assert_eq!(http.endpoint, "http://c:4318/v1/metrics");
        let specific = resolve_env(
            &config,
            Signal::Metrics,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "http://m:9000/custom",
                ),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ],
        )
        .unwrap();
        assert_eq!(specific.endpoint, "http://m:9000/custom");
        let off = resolve_env(
            &config,
            Signal::Metrics,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_METRICS_EXPORTER", "none"),
            ],
        );
        assert_eq!(off, None);
    }
}
