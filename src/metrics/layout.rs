//! The shared-memory layout of one worker's metrics and the label sets it encodes.
//!
//! Every worker writes its own [`WorkerMetrics`] with relaxed atomic adds (no lock, no
//! allocation per request); the supervisor maps the same memory read-only in spirit and
//! sums the workers when it is scraped or exports. Request series live in a fixed
//! open-addressing table keyed by (method, scheme, protocol version, status); a key that
//! finds the table full is counted in an overflow series, as OpenTelemetry SDKs do at
//! their cardinality limit.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::upstream::{SharedUpstream, UPSTREAM_SLOTS};

/// Bumped whenever the layout changes: a worker started from a newer binary during a
/// reload must not write into a region shaped for another.
pub(super) const LAYOUT_VERSION: u64 = 2;
/// Marks a region as initialised by this code.
const MAGIC: u64 = u64::from_be_bytes(*b"wsgigwm\0");

/// Request methods with a label of their own; anything else is `_OTHER` (as the HTTP
/// semantic conventions ask, to bound cardinality).
pub(super) const METHODS: [&str; 10] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "_OTHER",
];
/// `url.scheme` values.
pub(super) const SCHEMES: [&str; 2] = ["http", "https"];
/// `network.protocol.version` values.
pub(super) const VERSIONS: [&str; 3] = ["1.0", "1.1", "2"];

/// Upper bounds (seconds) of the request duration buckets: the ones the HTTP semantic
/// conventions recommend.
pub(super) const DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Upper bounds (bytes) of the body size buckets.
pub(super) const SIZE_BOUNDS: [f64; 11] = [
    0.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];
/// Buckets of a duration histogram: one per bound, plus one above the last.
pub(super) const DURATION_BUCKETS: usize = DURATION_BOUNDS.len() + 1;
/// Buckets of a size histogram.
pub(super) const SIZE_BUCKETS: usize = SIZE_BOUNDS.len() + 1;

/// Request series one worker can hold before new label sets go to the overflow series.
pub(super) const SERIES_CAPACITY: usize = 256;

/// The labels of one request series, packed into a non-zero `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey(u64);

const USED: u64 = 1 << 63;
const OVERFLOW: u64 = 1 << 62;

impl SeriesKey {
    /// The series of a finished request. `status` 0 means no response was sent.
    pub fn new(method: u8, scheme: u8, version: u8, status: u16) -> Self {
        Self(
            USED | u64::from(method)
                | (u64::from(scheme) << 8)
                | (u64::from(version) << 16)
                | (u64::from(status) << 24),
        )
    }

    /// The series that counts label sets past [`SERIES_CAPACITY`].
    pub fn overflow() -> Self {
        Self(USED | OVERFLOW)
    }

    /// True for the overflow series.
    pub fn is_overflow(self) -> bool {
        self.0 & OVERFLOW != 0
    }

    /// Index into [`METHODS`].
    pub fn method(self) -> usize {
        usize::from(self.0 as u8).min(METHODS.len() - 1)
    }

    /// Index into [`SCHEMES`].
    pub fn scheme(self) -> usize {
        usize::from((self.0 >> 8) as u8).min(SCHEMES.len() - 1)
    }

    /// Index into [`VERSIONS`].
    pub fn version(self) -> usize {
        usize::from((self.0 >> 16) as u8).min(VERSIONS.len() - 1)
    }

    /// The response status, 0 when the request ended before a response.
    pub fn status(self) -> u16 {
        (self.0 >> 24) as u16
    }

    fn raw(self) -> u64 {
        self.0
    }
}

/// The index of `method` in [`METHODS`].
pub(super) fn method_index(method: &http::Method) -> u8 {
    let index = METHODS[..METHODS.len() - 1]
        .iter()
        .position(|known| *known == method.as_str())
        .unwrap_or(METHODS.len() - 1);
    index as u8
}

/// The index of a scheme in [`SCHEMES`].
pub(super) fn scheme_index(scheme: &str) -> u8 {
    u8::from(scheme == "https")
}

/// The index of a protocol version in [`VERSIONS`].
pub(super) fn version_index(version: http::Version) -> u8 {
    match version {
        http::Version::HTTP_09 | http::Version::HTTP_10 => 0,
        http::Version::HTTP_11 => 1,
        _ => 2,
    }
}

/// One histogram in shared memory: per-bucket counts (not cumulative) and the sum.
#[repr(C)]
pub struct SharedHistogram<const N: usize> {
    buckets: [AtomicU64; N],
    sum: AtomicU64,
}

impl<const N: usize> SharedHistogram<N> {
    pub(super) fn record(&self, bucket: usize, amount: u64) {
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(amount, Ordering::Relaxed);
    }

    /// Per-bucket counts and the raw sum.
    pub fn read(&self) -> ([u64; N], u64) {
        let buckets = std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        (buckets, self.sum.load(Ordering::Relaxed))
    }
}

/// One request series: duration (sum in nanoseconds) and body sizes (sums in bytes).
#[repr(C)]
pub struct SharedSeries {
    key: AtomicU64,
    /// `http.server.request.duration`, nanoseconds.
    pub duration: SharedHistogram<DURATION_BUCKETS>,
    /// `http.server.request.body.size`, bytes.
    pub request_size: SharedHistogram<SIZE_BUCKETS>,
    /// `http.server.response.body.size`, bytes.
    pub response_size: SharedHistogram<SIZE_BUCKETS>,
}

impl SharedSeries {
    /// The series' labels, if it is in use.
    pub fn key(&self) -> Option<SeriesKey> {
        let raw = self.key.load(Ordering::Acquire);
        (raw != 0).then_some(SeriesKey(raw))
    }
}

/// Everything one worker process counts. Lives in a shared mapping the supervisor reads.
#[repr(C)]
pub struct WorkerMetrics {
    magic: AtomicU64,
    layout: AtomicU64,
    /// `http.server.active_requests` by method and scheme.
    active: [AtomicI64; METHODS.len() * SCHEMES.len()],
    /// Python threads running application code now.
    pub python_busy: AtomicI64,
    /// Python threads in the pool.
    pub python_threads: AtomicI64,
    /// Requests waiting for a Python thread.
    pub python_queued: AtomicI64,
    series: [SharedSeries; SERIES_CAPACITY],
    overflow: SharedSeries,
    /// Per upstream server: attempts, latency, health.
    upstreams: [SharedUpstream; UPSTREAM_SLOTS],
}

/// A finished request, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The request's labels.
    pub key: SeriesKey,
    /// From the service call to the end of the response body.
    pub duration: Duration,
    /// Request body bytes read.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
}

impl WorkerMetrics {
    /// Bytes a region needs.
    pub const SIZE: usize = std::mem::size_of::<Self>();

    /// Stamp freshly zeroed memory as a region of this layout.
    pub fn initialise(&self) {
        self.layout.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// True if the region was stamped by this layout.
    pub fn is_compatible(&self) -> bool {
        self.magic.load(Ordering::Acquire) == MAGIC
            && self.layout.load(Ordering::Relaxed) == LAYOUT_VERSION
    }

    /// A request started: count it as active until [`Self::request_finished`].
    pub fn request_started(&self, method: u8, scheme: u8) {
        self.active[active_index(method, scheme)].fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended (answered or abandoned).
    pub fn request_finished(&self, method: u8, scheme: u8, finished: &Finished) {
        self.active[active_index(method, scheme)].fetch_sub(1, Ordering::Relaxed);
        let series = self.series_for(finished.key);
        let nanos = u64::try_from(finished.duration.as_nanos()).unwrap_or(u64::MAX);
        series.duration.record(
            bucket_of(&DURATION_BOUNDS, finished.duration.as_secs_f64()),
            nanos,
        );
        series.request_size.record(
            bucket_of(&SIZE_BOUNDS, finished.request_bytes as f64),
            finished.request_bytes,
        );
        series.response_size.record(
            bucket_of(&SIZE_BOUNDS, finished.response_bytes as f64),
            finished.response_bytes,
        );
    }

    /// Active requests by (method index, scheme index).
    pub fn active(&self) -> impl Iterator<Item = (usize, usize, i64)> + '_ {
        self.active.iter().enumerate().map(|(i, value)| {
            (
                i / SCHEMES.len(),
                i % SCHEMES.len(),
                value.load(Ordering::Relaxed),
            )
        })
    }

    /// The series in use, overflow included.
    pub fn series(&self) -> impl Iterator<Item = (SeriesKey, &SharedSeries)> {
        self.series
            .iter()
            .chain(std::iter::once(&self.overflow))
            .filter_map(|series| series.key().map(|key| (key, series)))
    }

    /// The upstream servers this worker has counted.
    pub fn upstreams(&self) -> impl Iterator<Item = ((String, String), &SharedUpstream)> {
        self.upstreams
            .iter()
            .filter_map(|slot| slot.labels().map(|labels| (labels, slot)))
    }

    /// The slot of an upstream server, claimed on first use; None when all are taken.
    pub fn upstream_slot(&self, upstream: &str, server: &str) -> Option<&SharedUpstream> {
        super::upstream::claim(&self.upstreams, upstream, server)
    }

    /// The series for `key`, claimed on first use; the overflow series when full.
    fn series_for(&self, key: SeriesKey) -> &SharedSeries {
        let start = (key.raw().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
        for probe in 0..SERIES_CAPACITY {
            let series = &self.series[(start + probe) % SERIES_CAPACITY];
            match series.key.load(Ordering::Acquire) {
                raw if raw == key.raw() => return series,
                0 => match series.key.compare_exchange(
                    0,
                    key.raw(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return series,
                    Err(raw) if raw == key.raw() => return series,
                    Err(_) => {}
                },
                _ => {}
            }
        }
        let _ = self.overflow.key.compare_exchange(
            0,
            SeriesKey::overflow().raw(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        &self.overflow
    }
}

fn active_index(method: u8, scheme: u8) -> usize {
    usize::from(method).min(METHODS.len() - 1) * SCHEMES.len()
        + usize::from(scheme).min(SCHEMES.len() - 1)
}

/// The bucket of `value`: the first whose upper bound it does not exceed.
pub(super) fn bucket_of(bounds: &[f64], value: f64) -> usize {
    bounds.partition_point(|bound| *bound < value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_their_labels() {
        let key = SeriesKey::new(2, 1, 2, 404);
        assert_eq!(
            (key.method(), key.scheme(), key.version(), key.status()),
            (2, 1, 2, 404)
        );
        assert!(!key.is_overflow());
        assert!(SeriesKey::overflow().is_overflow());
    }

    #[test]
    fn buckets_are_upper_inclusive() {
        assert_eq!(bucket_of(&SIZE_BOUNDS, 0.0), 0);
        assert_eq!(bucket_of(&SIZE_BOUNDS, 1.0), 1);
        assert_eq!(bucket_of(&SIZE_BOUNDS, 64.0), 1);
        assert_eq!(bucket_of(&SIZE_BOUNDS, 65.0), 2);
        assert_eq!(bucket_of(&SIZE_BOUNDS, 1e12), SIZE_BOUNDS.len());
    }

    #[test]
    fn methods_outside_the_standard_set_are_other() {
        assert_eq!(
            METHODS[usize::from(method_index(&http::Method::GET))],
            "GET"
        );
        let custom = http::Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(METHODS[usize::from(method_index(&custom))], "_OTHER");
    }
}
