//! Per-upstream-server series: attempts by outcome, response head latency, requests in
//! flight and health, in slots of the worker's shared region that describe themselves
//! (the upstream's name and the server's address are written into the slot), so the
//! supervisor needs no copy of the configuration to label them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::layout::{bucket_of, SharedHistogram, DURATION_BOUNDS, DURATION_BUCKETS};

/// Upstream servers one worker can count; more are not counted (and logged once).
pub(super) const UPSTREAM_SLOTS: usize = 64;
/// Bytes of `upstream\0server` a slot keeps (longer labels are cut).
const LABEL_BYTES: usize = 192;

/// How an attempt to an upstream server ended (`outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// A response head with this status.
    Status(u16),
    /// No connection (refused, unreachable, timed out, TLS handshake failed).
    ConnectError,
    /// The connection ended before the response head.
    Reset,
    /// No response head within `read_timeout`.
    Timeout,
    /// A response that could not be parsed.
    Malformed,
    /// The client's request body failed on the way.
    ClientAborted,
}

/// The `outcome` labels, in slot order.
pub const OUTCOMES: [&str; 10] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "connect_error",
    "reset",
    "timeout",
    "malformed",
    "client_aborted",
];

impl UpstreamOutcome {
    fn index(self) -> usize {
        match self {
            UpstreamOutcome::Status(status) => usize::from((status / 100).clamp(1, 5)) - 1,
            UpstreamOutcome::ConnectError => 5,
            UpstreamOutcome::Reset => 6,
            UpstreamOutcome::Timeout => 7,
            UpstreamOutcome::Malformed => 8,
            UpstreamOutcome::ClientAborted => 9,
        }
    }

    /// The label (`2xx`, `connect_error`, ...).
    pub fn label(self) -> &'static str {
        OUTCOMES[self.index()]
    }
}

/// One upstream server's counters in shared memory.
#[repr(C)]
pub struct SharedUpstream {
    /// 0: free; 1: being claimed; 2: labels written.
    state: AtomicU64,
    labels: [AtomicU64; LABEL_BYTES / 8],
    /// Attempts by outcome ([`OUTCOMES`]).
    outcomes: [AtomicU64; OUTCOMES.len()],
    /// Time to the response head, nanoseconds.
    pub duration: SharedHistogram<DURATION_BUCKETS>,
    /// Attempts in flight.
    active: AtomicI64,
    /// 1 while this worker considers the server healthy.
    healthy: AtomicI64,
}

/// A slot's labels and values, as read by the supervisor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamReading {
    /// Attempts by outcome.
    pub outcomes: [u64; OUTCOMES.len()],
    /// Response head latency buckets (not cumulative) and the sum in nanoseconds.
    pub duration: ([u64; DURATION_BUCKETS], u64),
    /// Attempts in flight.
    pub active: i64,
    /// Workers that consider the server healthy.
    pub healthy: i64,
}

impl SharedUpstream {
    /// `(upstream, server)` once the slot is claimed.
    pub fn labels(&self) -> Option<(String, String)> {
        if self.state.load(Ordering::Acquire) != 2 {
            return None;
        }
        let bytes: Vec<u8> = self
            .labels
            .iter()
            .flat_map(|word| word.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&bytes[..end]);
        let (upstream, server) = text.split_once('\0')?;
        Some((upstream.to_owned(), server.to_owned()))
    }

    /// The values now.
    pub fn read(&self) -> UpstreamReading {
        UpstreamReading {
            outcomes: std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed)),
            duration: self.duration.read(),
            active: self.active.load(Ordering::Relaxed),
            healthy: self.healthy.load(Ordering::Relaxed),
        }
    }

    fn write_labels(&self, upstream: &str, server: &str) {
        let mut bytes = [0u8; LABEL_BYTES];
        let text = format!("{upstream}\0{server}");
        let mut len = text.len().min(LABEL_BYTES);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        for (word, chunk) in self.labels.iter().zip(bytes.chunks(8)) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(eight), Ordering::Relaxed);
        }
    }
}

/// Claim a slot in `slots` for `(upstream, server)` (the one it already has, if any).
pub(super) fn claim<'a>(
    slots: &'a [SharedUpstream],
    upstream: &str,
    server: &str,
) -> Option<&'a SharedUpstream> {
    let wanted = (upstream.to_owned(), server.to_owned());
    for slot in slots {
        if slot.labels().as_ref() == Some(&wanted) {
            return Some(slot);
        }
        if slot
            .state
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            slot.write_labels(upstream, server);
            slot.state.store(2, Ordering::Release);
            return Some(slot);
        }
    }
    None
}

/// What the proxy records about one upstream server.
#[derive(Clone, Copy)]
pub struct UpstreamMeter(&'static SharedUpstream);

impl UpstreamMeter {
    pub(super) fn new(slot: &'static SharedUpstream) -> Self {
        Self(slot)
    }

    /// An attempt starts.
    pub fn attempt_started(&self) {
        self.0.active.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt ended; `head` is the time to the response head, when there was one.
    pub fn attempt_finished(&self, outcome: UpstreamOutcome, head: Option<Duration>) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(head) = head {
            let nanos = u64::try_from(head.as_nanos()).unwrap_or(u64::MAX);
            self.0
                .duration
                .record(bucket_of(&DURATION_BOUNDS, head.as_secs_f64()), nanos);
        }
    }

    /// This worker's health verdict on the server.
    pub fn set_healthy(&self, healthy: bool) {
        self.0.healthy.store(i64::from(healthy), Ordering::Relaxed);
    }
}
