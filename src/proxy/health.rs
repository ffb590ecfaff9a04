//! Server health: passive (consecutive failures eject a server for a cooldown) and
//! active (a background task requests `health.path` on every server).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the first call: a clock cheap to store in an atomic.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What the health checks know of one server.
#[derive(Default)]
pub(crate) struct Health {
    /// Consecutive failures of real requests.
    fails: AtomicU32,
    /// Ejected by passive checks until this time ([`now_ms`]); 0: not ejected.
    ejected_until: AtomicU64,
    /// Set while the server is ejected or down, to log its return once.
    out: AtomicBool,
    /// Taken out by active checks.
    down: AtomicBool,
}

/// What a recorded failure did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing changed.
    Counted,
    /// The server is now ejected for the cooldown.
    Ejected,
}

impl Health {
    /// True when the server may take requests at `now` ([`now_ms`]).
    pub(crate) fn available(&self, now: u64) -> bool {
        !self.down.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now
    }

    /// A request succeeded; true when the server was out before (to log its return).
    pub(crate) fn success(&self) -> bool {
        if self.fails.load(Ordering::Relaxed) != 0 {
            self.fails.store(0, Ordering::Relaxed);
        }
        self.out.load(Ordering::Relaxed) && self.out.swap(false, Ordering::Relaxed)
    }

    /// A request failed. With `max_fails` > 0 (and `ejectable`), the `max_fails`-th
    /// failure in a row ejects the server for `cooldown`; once back, the next failure
    /// ejects it again.
    pub(crate) fn failure(&self, max_fails: u32, cooldown: Duration, ejectable: bool) -> Verdict {
        let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if max_fails == 0 || !ejectable || fails < max_fails {
            return Verdict::Counted;
        }
        let now = now_ms();
        if self.ejected_until.load(Ordering::Relaxed) > now {
            return Verdict::Counted; // already out (a request that was in flight)
        }
        self.fails.store(max_fails - 1, Ordering::Relaxed);
        self.ejected_until
            .store(now + cooldown.as_millis() as u64, Ordering::Relaxed);
        self.out.store(true, Ordering::Relaxed);
        Verdict::Ejected
    }

    /// The verdict of active checks.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
        if down {
            self.out.store(true, Ordering::Relaxed);
        } else {
            // Back by active checks: passive history is forgiven.
            self.fails.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
            self.out.store(false, Ordering::Relaxed);
        }
    }

    /// True while active checks hold the server out.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// Consecutive active check results and the thresholds that flip a server.
pub(crate) struct Streak {
    passes: u32,
    failures: u32,
}

impl Streak {
    pub(crate) fn new() -> Self {
        Self {
            passes: 0,
            failures: 0,
        }
    }

    /// Record a check; Some(down) when the server's state should flip.
    pub(crate) fn record(
        &mut self,
        passed: bool,
        currently_down: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        if passed {
            self.passes += 1;
            self.failures = 0;
            (currently_down && self.passes >= healthy_threshold).then_some(false)
        } else {
            self.failures += 1;
            self.passes = 0;
            (!currently_down && self.failures >= unhealthy_threshold).then_some(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_eject_and_one_more_failure_ejects_again() {
        let health = Health::default();
        let cooldown = Duration::from_millis(0);
        assert_eq!(health.failure(3, cooldown, true), Verdict::Counted);
        assert!(!health.success(), "not out: nothing to announce");
        assert_eq!(health.failure(3, cooldown, true), Verdict::Counted);
        assert_eq!(health.failure(3, cooldown, true), Verdict::Counted);
        assert_eq!(health.failure(3, cooldown, true), Verdict::Ejected);
        // The cooldown is over at once: the next failure ejects again.
        assert_eq!(health.failure(3, cooldown, true), Verdict::Ejected);
        assert!(health.success(), "back: announced once");
        assert!(!health.success());
        assert_eq!(health.failure(3, cooldown, false), Verdict::Counted);
        let long = Health::default();
        long.failure(1, Duration::from_secs(60), true);
        assert!(!long.available(now_ms()));
    }

    #[test]
    fn thresholds_flip_active_state() {
        let mut streak = Streak::new();
        assert_eq!(streak.record(false, false, 2, 2), None);
        assert_eq!(streak.record(false, false, 2, 2), Some(true));
        assert_eq!(streak.record(true, true, 2, 2), None);
        assert_eq!(streak.record(true, true, 2, 2), Some(false));
    }
}
