//! The supervisor side: every worker's region, the totals of workers that have exited,
//! and one summed [`Snapshot`] for `/metrics` and the OTLP exporter.
//!
//! Counters and histograms are cumulative over the gateway's life: when a worker exits
//! (recycled, reloaded or crashed) its counts are folded into the retired totals, so a
//! sum never goes down. Gauges (active requests, busy threads, queue) are summed over
//! the live workers only.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::layout::{
    SeriesKey, SharedHistogram, SharedSeries, WorkerMetrics, DURATION_BOUNDS, DURATION_BUCKETS,
    SIZE_BOUNDS, SIZE_BUCKETS,
};
use super::region::Region;
use super::upstream::{UpstreamReading, OUTCOMES};
use super::MetricsError;

/// Why a worker was replaced (`wsgi_gateway.worker.restarts` by `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// It exited or was killed unexpectedly.
    Crash,
    /// It asked to be replaced: max_requests, max_rss, or a request past the timeout.
    Recycle,
    /// A SIGHUP rolling reload replaced it.
    Reload,
}

impl RestartReason {
    const ALL: [Self; 3] = [Self::Crash, Self::Recycle, Self::Reload];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Recycle => "recycle",
            Self::Reload => "reload",
        }
    }
}

/// A histogram summed over workers: per-bucket counts (not cumulative) and the sum in
/// the metric's unit (seconds or bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// One count per bucket of the metric's bounds, plus the overflow bucket.
    pub buckets: Vec<u64>,
    /// Sum of the recorded values.
    pub sum: f64,
}

impl Histogram {
    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The three histograms of one request series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesTotals {
    /// `http.server.request.duration` (bounds: [`DURATION_BOUNDS`], seconds).
    pub duration: Histogram,
    /// `http.server.request.body.size` (bounds: [`SIZE_BOUNDS`], bytes).
    pub request_size: Histogram,
    /// `http.server.response.body.size` (bounds: [`SIZE_BOUNDS`], bytes).
    pub response_size: Histogram,
}

/// One of the request histograms, as both exporters name and read it.
pub(super) struct HistogramFamily {
    /// The OpenTelemetry name.
    pub otel_name: &'static str,
    /// The Prometheus name (unit suffix included).
    pub prometheus_name: &'static str,
    /// The description (`# HELP`).
    pub description: &'static str,
    /// The UCUM unit.
    pub unit: &'static str,
    /// The bucket bounds.
    pub bounds: &'static [f64],
    /// The histogram of a series.
    pub pick: fn(&SeriesTotals) -> &Histogram,
}

/// The request histograms.
pub(super) const HISTOGRAMS: [HistogramFamily; 3] = [
    HistogramFamily {
        otel_name: "http.server.request.duration",
        prometheus_name: "http_server_request_duration_seconds",
        description: "Duration of HTTP server requests.",
        unit: "s",
        bounds: &DURATION_BOUNDS,
        pick: |s| &s.duration,
    },
    HistogramFamily {
        otel_name: "http.server.request.body.size",
        prometheus_name: "http_server_request_body_size_bytes",
        description: "Size of HTTP server request bodies.",
        unit: "By",
        bounds: &SIZE_BOUNDS,
        pick: |s| &s.request_size,
    },
    HistogramFamily {
        otel_name: "http.server.response.body.size",
        prometheus_name: "http_server_response_body_size_bytes",
        description: "Size of HTTP server response bodies.",
        unit: "By",
        bounds: &SIZE_BOUNDS,
        pick: |s| &s.response_size,
    },
];

/// Everything the gateway reports at one moment, summed over its workers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When counting began (the supervisor's start): the start of every cumulative sum.
    pub started: SystemTime,
    /// When this snapshot was taken.
    pub taken: SystemTime,
    /// Request series by label set.
    pub series: BTreeMap<SeriesKey, SeriesTotals>,
    /// Active requests by (method index, scheme index).
    pub active: BTreeMap<(usize, usize), i64>,
    /// Python threads running application code.
    pub python_busy: i64,
    /// Python threads in all pools.
    pub python_threads: i64,
    /// Requests waiting for a Python thread.
    pub python_queued: i64,
    /// Worker processes running.
    pub workers: usize,
    /// Worker replacements by reason.
    pub restarts: Vec<(RestartReason, u64)>,
    /// Upstream servers by (upstream, server address).
    pub upstreams: BTreeMap<(String, String), UpstreamTotals>,
}

/// One upstream server, summed over workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamTotals {
    /// Attempts by outcome ([`OUTCOMES`]).
    pub outcomes: [u64; OUTCOMES.len()],
    /// Time to the response head (bounds: [`DURATION_BOUNDS`], seconds).
    pub duration: Histogram,
    /// Attempts in flight (live workers).
    pub active: i64,
    /// Live workers that consider the server healthy.
    pub healthy: i64,
}

/// Counters of an upstream server as the regions hold them.
#[derive(Debug, Clone, Copy, Default)]
struct RawUpstream {
    outcomes: [u64; OUTCOMES.len()],
    duration: RawHistogram<DURATION_BUCKETS>,
}

impl RawUpstream {
    fn add(&mut self, reading: &UpstreamReading) {
        for (mine, theirs) in self.outcomes.iter_mut().zip(reading.outcomes) {
            *mine += theirs;
        }
        let (buckets, sum) = reading.duration;
        for (mine, theirs) in self.duration.buckets.iter_mut().zip(buckets) {
            *mine += theirs;
        }
        self.duration.sum += sum;
    }
}

/// One histogram's integer totals as the regions hold them (nanoseconds or bytes).
#[derive(Debug, Clone, Copy)]
struct RawHistogram<const N: usize> {
    buckets: [u64; N],
    sum: u64,
}

impl<const N: usize> Default for RawHistogram<N> {
    fn default() -> Self {
        Self {
            buckets: [0; N],
            sum: 0,
        }
    }
}

impl<const N: usize> RawHistogram<N> {
    fn add(&mut self, shared: &SharedHistogram<N>) {
        let (buckets, sum) = shared.read();
        for (mine, theirs) in self.buckets.iter_mut().zip(buckets) {
            *mine += theirs;
        }
        self.sum += sum;
    }

    /// In the metric's unit: `unit` is the size of one raw count (1e-9 for nanoseconds).
    fn histogram(&self, unit: f64) -> Histogram {
        Histogram {
            buckets: self.buckets.to_vec(),
            sum: self.sum as f64 * unit,
        }
    }
}

/// The integer totals of one request series.
#[derive(Debug, Clone, Copy, Default)]
struct RawSeries {
    duration: RawHistogram<DURATION_BUCKETS>,
    request_size: RawHistogram<SIZE_BUCKETS>,
    response_size: RawHistogram<SIZE_BUCKETS>,
}

impl RawSeries {
    fn add(&mut self, series: &SharedSeries) {
        self.duration.add(&series.duration);
        self.request_size.add(&series.request_size);
        self.response_size.add(&series.response_size);
    }

    fn totals(&self) -> SeriesTotals {
        SeriesTotals {
            duration: self.duration.histogram(1e-9),
            request_size: self.request_size.histogram(1.0),
            response_size: self.response_size.histogram(1.0),
        }
    }
}

/// The supervisor's view of every worker's metrics.
pub struct MetricsHub {
    started: SystemTime,
    live: HashMap<u32, Region>,
    retired: BTreeMap<SeriesKey, RawSeries>,
    retired_upstreams: BTreeMap<(String, String), RawUpstream>,
    restarts: [u64; RestartReason::ALL.len()],
}

impl Default for MetricsHub {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsHub {
    /// An empty hub; counting starts now.
    pub fn new() -> Self {
        Self {
            started: SystemTime::now(),
            live: HashMap::new(),
            retired: BTreeMap::new(),
            retired_upstreams: BTreeMap::new(),
            restarts: [0; RestartReason::ALL.len()],
        }
    }

    /// A region for a worker about to start.
    pub fn new_region(&self) -> Result<Region, MetricsError> {
        Region::shared()
    }

    /// Worker `pid` started with `region`.
    pub fn worker_started(&mut self, pid: u32, region: Region) {
        self.live.insert(pid, region);
    }

    /// Worker `pid` exited: keep its counts, drop its gauges and its region.
    pub fn worker_exited(&mut self, pid: u32) {
        if let Some(region) = self.live.remove(&pid) {
            for (key, series) in region.metrics().series() {
                self.retired.entry(key).or_default().add(series);
            }
            for (labels, slot) in region.metrics().upstreams() {
                self.retired_upstreams
                    .entry(labels)
                    .or_default()
                    .add(&slot.read());
            }
        }
    }

    /// A worker was replaced for `reason`.
    pub fn worker_restarted(&mut self, reason: RestartReason) {
        self.restarts[reason as usize] += 1;
    }

    /// The sum over every worker, live and exited.
    pub fn snapshot(&self) -> Snapshot {
        let mut series = self.retired.clone();
        let mut upstreams = self.retired_upstreams.clone();
        let mut upstream_gauges: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        let mut active = BTreeMap::new();
        let (mut python_busy, mut python_threads, mut python_queued) = (0, 0, 0);
        for region in self.live.values() {
            let metrics: &WorkerMetrics = region.metrics();
            for (key, shared) in metrics.series() {
                series.entry(key).or_default().add(shared);
            }
            for (labels, slot) in metrics.upstreams() {
                let reading = slot.read();
                upstreams.entry(labels.clone()).or_default().add(&reading);
                let gauges = upstream_gauges.entry(labels).or_default();
                gauges.0 += reading.active;
                gauges.1 += reading.healthy;
            }
            for (method, scheme, value) in metrics.active() {
                if value != 0 {
                    *active.entry((method, scheme)).or_insert(0) += value;
                }
            }
            python_busy += metrics
                .python_busy
                .load(std::sync::atomic::Ordering::Relaxed);
            python_threads += metrics
                .python_threads
                .load(std::sync::atomic::Ordering::Relaxed);
            python_queued += metrics
                .python_queued
                .load(std::sync::atomic::Ordering::Relaxed);
        }
        // A label set that has been seen reports its active count, even at zero.
        for key in series.keys().filter(|key| !key.is_overflow()) {
            active.entry((key.method(), key.scheme())).or_insert(0);
        }
        Snapshot {
            started: self.started,
            taken: SystemTime::now(),
            series: series
                .iter()
                .map(|(key, raw)| (*key, raw.totals()))
                .collect(),
            active,
            python_busy,
            python_threads,
            python_queued,
            workers: self.live.len(),
            restarts: RestartReason::ALL
                .iter()
                .map(|reason| (*reason, self.restarts[*reason as usize]))
                .collect(),
            upstreams: upstreams
                .into_iter()
                .map(|(labels, raw)| {
                    let (active, healthy) =
                        upstream_gauges.get(&labels).copied().unwrap_or_default();
                    let totals = UpstreamTotals {
                        outcomes: raw.outcomes,
                        duration: raw.duration.histogram(1e-9),
                        active,
                        healthy,
                    };
                    (labels, totals)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::layout::Finished;

    fn finish(metrics: &WorkerMetrics, status: u16, millis: u64, body: u64) {
        metrics.request_started(2, 0);
        metrics.request_finished(
            2,
            0,
            &Finished {
                key: SeriesKey::new(2, 0, 1, status),
                duration: Duration::from_millis(millis),
                request_bytes: 0,
                response_bytes: body,
            },
        );
    }

    #[test]
    fn exited_workers_keep_their_counts_and_lose_their_gauges() {
        let mut hub = MetricsHub::new();
        let (first, second) = (hub.new_region().unwrap(), hub.new_region().unwrap());
        finish(first.metrics(), 200, 3, 100);
        finish(second.metrics(), 200, 30, 5000);
        finish(second.metrics(), 404, 1, 0);
        first.metrics().request_started(6, 0);
        hub.worker_started(1, first);
        hub.worker_started(2, second);
        let before = hub.snapshot();
        let ok = &before.series[&SeriesKey::new(2, 0, 1, 200)];
        assert_eq!(ok.duration.count(), 2);
        assert!((ok.duration.sum - 0.033).abs() < 1e-9);
        assert_eq!(ok.response_size.sum, 5100.0);
        assert_eq!(before.active[&(6, 0)], 1);
        assert_eq!(before.active[&(2, 0)], 0);

        hub.worker_exited(1);
        hub.worker_restarted(RestartReason::Crash);
        let after = hub.snapshot();
        assert_eq!(after.series, before.series);
        assert!(!after.active.contains_key(&(6, 0)));
        assert_eq!(after.workers, 1);
        assert_eq!(after.restarts[0], (RestartReason::Crash, 1));
    }
}
