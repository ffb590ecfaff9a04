//! `/metrics`: a [`Snapshot`] in the Prometheus text exposition format (0.0.4).
//!
//! Names follow the OpenTelemetry-to-Prometheus mapping: dots become underscores, the
//! unit is a suffix (`_seconds`, `_bytes`), counters end in `_total`, and attribute
//! names become labels (`http.request.method` -> `http_request_method`).

use std::fmt::Write as _;

use super::aggregate::{Histogram, Snapshot, HISTOGRAMS};
use super::layout::{SeriesKey, DURATION_BOUNDS, METHODS, SCHEMES, VERSIONS};
use super::upstream::OUTCOMES;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render `snapshot` as Prometheus text.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for family in &HISTOGRAMS {
        let name = family.prometheus_name;
        header(&mut out, name, family.description, "histogram");
        for (key, totals) in &snapshot.series {
            let labels = series_labels(*key);
            histogram(
                &mut out,
                name,
                &labels,
                family.bounds,
                (family.pick)(totals),
            );
        }
    }

    header(
        &mut out,
        "http_server_active_requests",
        "Number of active HTTP server requests.",
        "gauge",
    );
    for ((method, scheme), value) in &snapshot.active {
        let _ = writeln!(
            out,
            "http_server_active_requests{{http_request_method=\"{}\",url_scheme=\"{}\"}} {value}",
            METHODS[*method], SCHEMES[*scheme]
        );
    }

    let gauges = [
        (
            "wsgi_gateway_python_threads_busy",
            "Python threads running application code.",
            snapshot.python_busy,
        ),
        (
            "wsgi_gateway_python_threads",
            "Python threads in the workers' pools.",
            snapshot.python_threads,
        ),
        (
            "wsgi_gateway_python_queue_depth",
            "Requests waiting for a free Python thread.",
            snapshot.python_queued,
        ),
        (
            "wsgi_gateway_workers",
            "Worker processes running.",
            snapshot.workers as i64,
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, help, "gauge");
        let _ = writeln!(out, "{name} {value}");
    }

    let name = "wsgi_gateway_worker_restarts_total";
    header(
        &mut out,
        name,
        "Worker processes replaced, by reason.",
        "counter",
    );
    for (reason, count) in &snapshot.restarts {
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {count}", reason.label());
    }
    upstreams(&mut out, snapshot);
    out
}

/// The per-upstream-server families.
fn upstreams(out: &mut String, snapshot: &Snapshot) {
    if snapshot.upstreams.is_empty() {
        return;
    }
    let labels = |(upstream, server): &(String, String)| {
        format!(
            "upstream=\"{}\",server=\"{}\"",
            escape(upstream),
            escape(server)
        )
    };
    let name = "wsgi_gateway_upstream_requests_total";
    header(
        out,
        name,
        "Attempts to upstream servers, by outcome (a status class or an error).",
        "counter",
    );
    for (key, totals) in &snapshot.upstreams {
        for (outcome, count) in OUTCOMES.iter().zip(totals.outcomes) {
            if count > 0 {
                let _ = writeln!(
                    out,
                    "{name}{{{},outcome=\"{outcome}\"}} {count}",
                    labels(key)
                );
            }
        }
    }
    let name = "wsgi_gateway_upstream_duration_seconds";
    header(
        out,
        name,
        "Time from sending a request upstream to its response head.",
        "histogram",
    );
    for (key, totals) in &snapshot.upstreams {
        histogram(out, name, &labels(key), &DURATION_BOUNDS, &totals.duration);
    }
    for (name, help, pick) in [
        (
            "wsgi_gateway_upstream_active_requests",
            "Attempts to the upstream server in flight.",
            (|t: &super::UpstreamTotals| t.active) as fn(&super::UpstreamTotals) -> i64,
        ),
        (
            "wsgi_gateway_upstream_healthy",
            "Workers that consider the upstream server healthy.",
            |t: &super::UpstreamTotals| t.healthy,
        ),
    ] {
        header(out, name, help, "gauge");
        for (key, totals) in &snapshot.upstreams {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(key), pick(totals));
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The label pairs of a request series, without braces.
fn series_labels(key: SeriesKey) -> String {
    if key.is_overflow() {
        return "otel_metric_overflow=\"true\"".into();
    }
    let mut labels = format!("http_request_method=\"{}\"", METHODS[key.method()]);
    match key.status() {
        0 => labels.push_str(",error_type=\"aborted\""),
        status => {
            let _ = write!(labels, ",http_response_status_code=\"{status}\"");
            if status >= 500 {
                let _ = write!(labels, ",error_type=\"{status}\"");
            }
        }
    }
    let _ = write!(
        labels,
        ",network_protocol_name=\"http\",network_protocol_version=\"{}\",url_scheme=\"{}\"",
        VERSIONS[key.version()],
        SCHEMES[key.scheme()]
    );
    labels
}

fn histogram(out: &mut String, name: &str, labels: &str, bounds: &[f64], histogram: &Histogram) {
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(&histogram.buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let total = histogram.count();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}
