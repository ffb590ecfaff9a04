//! OTLP metrics: the supervisor exports the summed [`Snapshot`] every
//! `telemetry.metrics_interval` (or `OTEL_METRIC_EXPORT_INTERVAL` milliseconds), over
//! gRPC or HTTP/protobuf, with cumulative temporality, and once more at shutdown.
//!
//! One stream per gateway (not per worker process): the workers' counts are summed in
//! shared memory first, so the collector sees the same numbers as `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram as OtlpHistogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::aggregate::{Histogram, HistogramFamily, MetricsHub, Snapshot, HISTOGRAMS};
use super::layout::{SeriesKey, METHODS, SCHEMES, VERSIONS};
use super::MetricsError;
use crate::config::TelemetryConfig;
use crate::telemetry::endpoint::{resolve, OtlpTarget, Protocol, Signal};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends snapshots to an OTLP collector.
pub struct OtlpMetricsExporter {
    target: OtlpTarget,
    resource: Resource,
    transport: Transport,
}

enum Transport {
    Grpc(MetricsServiceClient<tonic::transport::Channel>),
    Http(reqwest::Client),
}

impl OtlpMetricsExporter {
    /// An exporter to `target`; connects lazily, so a collector that is down is only an
    /// export error later, never a start-up failure.
    pub fn new(target: OtlpTarget, service_name: Option<&str>) -> Result<Self, MetricsError> {
        let transport = match target.protocol {
            Protocol::Grpc => {
                let channel = tonic::transport::Channel::from_shared(target.endpoint.clone())
                    .map_err(|e| MetricsError::Export(format!("{}: {e}", target.endpoint)))?
                    .timeout(EXPORT_TIMEOUT)
                    .connect_timeout(EXPORT_TIMEOUT)
                    .connect_lazy();
                Transport::Grpc(MetricsServiceClient::new(channel))
            }
            Protocol::HttpProtobuf => Transport::Http(
                reqwest::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()
                    .map_err(|e| MetricsError::Export(e.to_string()))?,
            ),
        };
        Ok(Self {
            target,
            resource: resource(service_name),
            transport,
        })
    }

    /// Export one snapshot.
    pub async fn export(&self, snapshot: &Snapshot) -> Result<(), MetricsError> {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "wsgi-gateway".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: metrics(snapshot),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let failed =
            |error: String| MetricsError::Export(format!("{}: {error}", self.target.endpoint));
        match &self.transport {
            Transport::Grpc(client) => {
                client
                    .clone()
                    .export(request)
                    .await
                    .map_err(|status| failed(status.message().to_owned()))?;
            }
            Transport::Http(client) => {
                let response = client
                    .post(&self.target.endpoint)
                    .header("Content-Type", "application/x-protobuf")
                    .body(request.encode_to_vec())
                    .send()
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if !response.status().is_success() {
                    return Err(failed(format!("HTTP {}", response.status())));
                }
            }
        }
        Ok(())
    }
}

/// How long the export at shutdown may take.
const FINAL_EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The supervisor's periodic export.
pub struct PeriodicExport {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PeriodicExport {
    /// Start exporting `hub` if an OTLP endpoint is configured (`telemetry` or the
    /// `OTEL_*` variables); None otherwise, or if the endpoint is unusable (logged).
    pub fn start(telemetry: &TelemetryConfig, hub: Arc<Mutex<MetricsHub>>) -> Option<Self> {
        let target = match resolve(telemetry, Signal::Metrics) {
            Ok(Some(target)) => target,
            Ok(None) => return None,
            Err(error) => {
                tracing::error!("metrics are not exported: {error}");
                return None;
            }
        };
        let interval = telemetry
            .metrics_interval
            .or_else(|| {
                std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
                    .ok()
                    .and_then(|ms| ms.parse().ok())
                    .map(Duration::from_millis)
            })
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_millis(100));
        let endpoint = target.endpoint.clone();
        let exporter = match OtlpMetricsExporter::new(target, telemetry.service_name.as_deref()) {
            Ok(exporter) => exporter,
            Err(error) => {
                tracing::error!("metrics are not exported: {error}");
                return None;
            }
        };
        tracing::info!(?interval, "exporting metrics over OTLP to {endpoint}");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run_periodic(exporter, hub, interval, stopped));
        Some(Self { stop, task })
    }

    /// Export once more (the final counts) and stop; bounded, so a collector that is
    /// down does not hold the shutdown up.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(FINAL_EXPORT_TIMEOUT, self.task)
            .await
            .is_err()
        {
            tracing::warn!("the last metrics export did not finish in {FINAL_EXPORT_TIMEOUT:?}");
        }
    }
}

/// Export `hub`'s snapshot every `interval` until `stop` fires, then once more.
async fn run_periodic(
    exporter: OtlpMetricsExporter,
    hub: Arc<Mutex<MetricsHub>>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = stop.changed() => true,
        };
        let snapshot = hub.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
        match exporter.export(&snapshot).await {
            Ok(()) if failing => {
                tracing::info!("OTLP metrics export works again");
                failing = false;
            }
            Ok(()) => {}
            // Said once per outage, not at every interval.
            Err(error) if !failing => {
                tracing::warn!("{error}");
                failing = true;
            }
            Err(_) => {}
        }
        if last {
            return;
        }
    }
}

fn metrics(snapshot: &Snapshot) -> Vec<Metric> {
    let start = nanos(snapshot.started);
    let now = nanos(snapshot.taken);
    let histogram = |family: &HistogramFamily| Metric {
        name: family.otel_name.into(),
        description: family.description.into(),
        unit: family.unit.into(),
        data: Some(metric::Data::Histogram(OtlpHistogram {
            data_points: snapshot
                .series
                .iter()
                .map(|(key, totals)| {
                    histogram_point(*key, (family.pick)(totals), family.bounds, start, now)
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let gauge = |name: &str, description: &str, unit: &str, value: i64| Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![int_point(Vec::new(), value, 0, now)],
        })),
        ..Default::default()
    };
    let mut metrics: Vec<Metric> = HISTOGRAMS.iter().map(histogram).collect();
    metrics.extend([
        Metric {
            name: "http.server.active_requests".into(),
            description: "Number of active HTTP server requests.".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: snapshot
                    .active
                    .iter()
                    .map(|((method, scheme), value)| {
                        let attributes = vec![
                            string("http.request.method", METHODS[*method]),
                            string("url.scheme", SCHEMES[*scheme]),
                        ];
                        int_point(attributes, *value, start, now)
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: false,
            })),
            ..Default::default()
        },
        gauge(
            "wsgi_gateway.python.threads.busy",
            "Python threads running application code.",
            "{thread}",
            snapshot.python_busy,
        ),
        gauge(
            "wsgi_gateway.python.threads",
            "Python threads in the workers' pools.",
            "{thread}",
            snapshot.python_threads,
        ),
        gauge(
            "wsgi_gateway.python.queue.depth",
            "Requests waiting for a free Python thread.",
            "{request}",
            snapshot.python_queued,
        ),
        gauge(
            "wsgi_gateway.workers",
            "Worker processes running.",
            "{worker}",
            snapshot.workers as i64,
        ),
        Metric {
            name: "wsgi_gateway.worker.restarts".into(),
            description: "Worker processes replaced, by reason.".into(),
            unit: "{restart}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: snapshot
                    .restarts
                    .iter()
                    .map(|(reason, count)| {
                        int_point(
                            vec![string("reason", reason.label())],
                            i64::try_from(*count).unwrap_or(i64::MAX),
                            start,
                            now,
                        )
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        },
    ]);
    metrics.extend(upstream_metrics(snapshot, start, now));
    metrics
}

/// `wsgi_gateway.upstream.*`, by upstream and server.
fn upstream_metrics(snapshot: &Snapshot, start: u64, now: u64) -> Vec<Metric> {
    if snapshot.upstreams.is_empty() {
        return Vec::new();
    }
    let labels = |(upstream, server): &(String, String)| {
        vec![
            string("wsgi_gateway.upstream", upstream),
            string("server.address", server),
        ]
    };
    let sum = |name: &str, description: &str, unit: &str, monotonic: bool, points| Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    };
    let requests = snapshot
        .upstreams
        .iter()
        .flat_map(|(key, totals)| {
            super::OUTCOMES
                .iter()
                .zip(totals.outcomes)
                .filter(|(_, count)| *count > 0)
                .map(move |(outcome, count)| {
                    let mut attributes = labels(key);
                    attributes.push(string("outcome", outcome));
                    int_point(
                        attributes,
                        i64::try_from(count).unwrap_or(i64::MAX),
                        start,
                        now,
                    )
                })
        })
        .collect();
    let gauge = |pick: fn(&super::UpstreamTotals) -> i64| -> Vec<NumberDataPoint> {
        snapshot
            .upstreams
            .iter()
            .map(|(key, totals)| int_point(labels(key), pick(totals), start, now))
            .collect()
    };
    vec![
        sum(
            "wsgi_gateway.upstream.requests",
            "Attempts to upstream servers, by outcome (a status class or an error).",
            "{request}",
            true,
            requests,
        ),
        Metric {
            name: "wsgi_gateway.upstream.duration".into(),
            description: "Time from sending a request upstream to its response head.".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(OtlpHistogram {
                data_points: snapshot
                    .upstreams
                    .iter()
                    .map(|(key, totals)| HistogramDataPoint {
                        attributes: labels(key),
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: totals.duration.count(),
                        sum: Some(totals.duration.sum),
                        bucket_counts: totals.duration.buckets.clone(),
                        explicit_bounds: super::layout::DURATION_BOUNDS.to_vec(),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
        sum(
            "wsgi_gateway.upstream.active_requests",
            "Attempts to the upstream server in flight.",
            "{request}",
            false,
            gauge(|t| t.active),
        ),
        Metric {
            name: "wsgi_gateway.upstream.healthy".into(),
            description: "Workers that consider the upstream server healthy.".into(),
            unit: "{worker}".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: gauge(|t| t.healthy),
            })),
            ..Default::default()
        },
    ]
}

/// The attributes of a request series, by the HTTP semantic conventions.
fn series_attributes(key: SeriesKey) -> Vec<KeyValue> {
    if key.is_overflow() {
        return vec![KeyValue {
            key: "otel.metric.overflow".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        }];
    }
    let mut attributes = vec![
        string("http.request.method", METHODS[key.method()]),
        string("url.scheme", SCHEMES[key.scheme()]),
        string("network.protocol.name", "http"),
        string("network.protocol.version", VERSIONS[key.version()]),
    ];
    match key.status() {
        0 => attributes.push(string("error.type", "aborted")),
        status => {
            attributes.push(KeyValue {
                key: "http.response.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i64::from(status))),
                }),
                ..Default::default()
            });
            if status >= 500 {
                attributes.push(string("error.type", &status.to_string()));
            }
        }
    }
    attributes
}

fn histogram_point(
    key: SeriesKey,
    histogram: &Histogram,
    bounds: &[f64],
    start: u64,
    now: u64,
) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: series_attributes(key),
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: histogram.count(),
        sum: Some(histogram.sum),
        bucket_counts: histogram.buckets.clone(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

fn int_point(attributes: Vec<KeyValue>, value: i64, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The SDK's resource (service name, `OTEL_RESOURCE_ATTRIBUTES`) as OTLP attributes.
fn resource(service_name: Option<&str>) -> Resource {
    let attributes = crate::telemetry::resource(service_name)
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(match value {
                    opentelemetry::Value::Bool(b) => any_value::Value::BoolValue(*b),
                    opentelemetry::Value::I64(i) => any_value::Value::IntValue(*i),
                    opentelemetry::Value::F64(f) => any_value::Value::DoubleValue(*f),
                    other => any_value::Value::StringValue(other.to_string()),
                }),
            }),
            ..Default::default()
        })
        .collect();
    Resource {
        attributes,
        ..Default::default()
    }
}
