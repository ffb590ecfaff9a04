//! Logging and tracing setup.
//!
//! Logs: text or JSON lines on stderr, filtered by `RUST_LOG` or `telemetry.log_level`;
//! JSON lines logged during a traced request carry its `trace_id` and `span_id`.
//! Traces: when an OTLP endpoint is configured (`telemetry.otlp_endpoint` or the
//! standard `OTEL_EXPORTER_OTLP_*` variables), request spans are exported over gRPC or
//! HTTP/protobuf by a batch processor on its own thread, so a slow or absent collector
//! never holds a request up. `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and
//! `OTEL_TRACES_SAMPLER*` are honoured by the SDK. Request spans use the target
//! [`SPAN_TARGET`], which only the tracing layer enables: without an exporter their
//! callsites stay disabled and cost nothing.

pub mod endpoint;
pub mod request_span;
pub mod trace_ids;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;

use endpoint::{Protocol, Signal};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogFormat, TelemetryConfig};

/// The target of request spans (enabled only for export).
pub const SPAN_TARGET: &str = "wsgi_gateway::trace";

/// Keeps the exporter alive; flushes spans when dropped (at graceful shutdown).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("wsgi-gateway: flushing spans at exit failed: {error}");
            }
        }
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: cannot set up the OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// Install logging and, if configured, trace export. Call inside the runtime (the gRPC
/// exporter keeps its handle).
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // Request spans are for export only: logging them would cost every request.
        .add_directive(
            format!("{SPAN_TARGET}=off")
                .parse()
                .expect("a valid directive"),
        );
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(trace_ids::JsonWithTraceIds(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            ))
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let provider = tracer_provider(config)?;
    let traces = provider.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("wsgi-gateway"))
            .with_filter(filter_fn(|metadata| metadata.target() == SPAN_TARGET))
    });
    EXPORTING.store(traces.is_some(), std::sync::atomic::Ordering::Relaxed);
    // Not `.with(Option<Layer>)`: a `None` layer answers "always" for every callsite, so
    // the request spans would be created, entered and closed in the registry for every
    // request even with nothing to export them to.
    let registry = tracing_subscriber::registry().with(logs);
    let _ = match traces {
        Some(traces) => registry.with(traces).try_init(),
        None => registry.try_init(),
    };
    Ok(TelemetryGuard { provider })
}

/// Set once at start-up when traces are exported.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True when traces are exported (spans should carry context into the app). A flag set
/// at start-up, not `tracing::enabled!`: with per-layer filters, asking the subscriber
/// without then emitting leaves its per-thread filter state set, and the next log event
/// on that thread was dropped.
pub fn tracing_enabled() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

fn tracer_provider(config: &TelemetryConfig) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let target =
        endpoint::resolve(config, Signal::Traces).map_err(|e| TelemetryError(e.to_string()))?;
    let Some(target) = target else {
        return Ok(None);
    };
    let exporter = match target.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&target.endpoint)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(&target.endpoint)
            .build(),
    }
    .map_err(|e| TelemetryError(e.to_string()))?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(config.service_name.as_deref()))
            .build(),
    ))
}

/// The resource every signal carries, as the SDK reads it from `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`. `service.name`: `OTEL_SERVICE_NAME`, else
/// `telemetry.service_name`, else one in `OTEL_RESOURCE_ATTRIBUTES`, else `wsgi-gateway`.
pub fn resource(configured_name: Option<&str>) -> opentelemetry_sdk::Resource {
    let named_in_attributes = std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attributes| {
        attributes
            .split(',')
            .any(|a| a.trim().starts_with("service.name="))
    });
    let builder = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder.build()
    } else if let Some(name) = configured_name {
        builder.with_service_name(name.to_owned()).build()
    } else if named_in_attributes {
        builder.build()
    } else {
        builder.with_service_name("wsgi-gateway").build()
    }
}
