//! When a worker should make way for a fresh one: after `server.max_requests` (plus
//! jitter), over `server.max_rss`, or after a request ran past `server.timeout` (a
//! Python thread cannot be interrupted, so its worker is replaced).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// The recycle trigger of one worker.
pub struct Recycle {
    served: AtomicU64,
    limit: Option<u64>,
    reason: Mutex<Option<String>>,
    requested: Notify,
}

impl Recycle {
    /// Recycle after `max_requests` plus up to `jitter` requests (0: never).
    pub fn new(max_requests: u64, jitter: u64) -> Self {
        let limit = (max_requests > 0).then(|| {
            // Enough randomness to spread workers: the clock's nanoseconds and the pid.
            let noise = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as u64)
                ^ u64::from(std::process::id());
            max_requests + if jitter > 0 { noise % (jitter + 1) } else { 0 }
        });
        Self {
            served: AtomicU64::new(0),
            limit,
            reason: Mutex::new(None),
            requested: Notify::new(),
        }
    }

    /// Count one request.
    pub fn count(&self) {
        if let Some(limit) = self.limit {
            let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
            if served == limit {
                self.trigger("server.max_requests reached".into());
            }
        }
    }

    /// Ask for this worker to be replaced; the first reason wins.
    pub fn trigger(&self, reason: String) {
        let mut current = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_none() {
            *current = Some(reason);
            self.requested.notify_one();
        }
    }

    /// Requests counted so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Wait until a recycle is asked for; returns the reason.
    pub async fn requested(&self) -> String {
        loop {
            let notified = self.requested.notified();
            if let Some(reason) = self
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return reason;
            }
            notified.await;
        }
    }

    /// Check the resident set size every second and trigger over `max_bytes` (0: off).
    pub fn watch_rss(self: Arc<Self>, max_bytes: u64) {
        if max_bytes == 0 {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(rss) = resident_bytes() {
                    if rss > max_bytes {
                        self.trigger(format!(
                            "server.max_rss exceeded ({rss} > {max_bytes} bytes)"
                        ));
                        return;
                    }
                }
            }
        });
    }
}

/// This process's resident set size, from /proc/self/statm.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
