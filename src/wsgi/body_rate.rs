//! `limits.min_body_rate`: how fast a streamed request body must arrive while the
//! application waits for it.
//!
//! Only time spent waiting for the client counts (while the application computes, the
//! client is held back by flow control and is not to blame). The client starts with a
//! credit of `window` of waiting; every byte received earns `1 / rate` seconds back
//! (never more than `window` in all), every wait spends its duration. A client that
//! keeps up with the rate never runs out; one that falls behind it by more than
//! `window` does, and the read fails (408).

use std::time::Duration;

/// The configured minimum rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinBodyRate {
    /// Bytes per second; 0 disables the check.
    pub bytes_per_second: u64,
    /// How far behind the rate a client may fall.
    pub window: Duration,
}

/// One body's standing against [`MinBodyRate`].
#[derive(Clone, Debug)]
pub struct RateBudget {
    rate: MinBodyRate,
    credit: Duration,
}

impl RateBudget {
    /// A fresh budget: a full window of credit.
    pub fn new(rate: MinBodyRate) -> Self {
        Self {
            rate,
            credit: rate.window,
        }
    }

    /// How long the next wait may last before the client falls too far behind; None
    /// when no rate is enforced.
    pub fn allowance(&self) -> Option<Duration> {
        (self.rate.bytes_per_second > 0).then_some(self.credit)
    }

    /// Account for a wait of `waited` that brought `bytes`.
    pub fn record(&mut self, bytes: u64, waited: Duration) {
        if self.rate.bytes_per_second == 0 {
            return;
        }
        let earned = Duration::from_secs_f64(bytes as f64 / self.rate.bytes_per_second as f64);
        self.credit = (self.credit.saturating_sub(waited) + earned).min(self.rate.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: MinBodyRate = MinBodyRate {
        bytes_per_second: 1000,
        window: Duration::from_secs(2),
    };

    #[test]
    fn a_client_at_the_rate_keeps_its_credit() {
        let mut budget = RateBudget::new(RATE);
        for _ in 0..100 {
            budget.record(100, Duration::from_millis(100));
        }
        assert_eq!(budget.allowance(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_client_at_half_the_rate_is_cut_after_about_twice_the_window() {
        let mut budget = RateBudget::new(RATE);
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        // Each wait may last the allowance; a longer one times out.
        while budget.allowance().unwrap() >= step {
            budget.record(50, step);
            waited += step;
        }
        let cut_after = waited + budget.allowance().unwrap();
        assert!(
            (Duration::from_millis(3900)..=Duration::from_secs(4)).contains(&cut_after),
            "{cut_after:?}"
        );
    }

    #[test]
    fn credit_never_exceeds_the_window() {
        let mut budget = RateBudget::new(RATE);
        budget.record(1_000_000, Duration::from_millis(1));
        assert_eq!(budget.allowance(), Some(Duration::from_secs(2)));
        budget.record(0, Duration::from_secs(2));
        assert_eq!(budget.allowance(), Some(Duration::ZERO));
    }

    #[test]
    fn a_zero_rate_enforces_nothing() {
        let mut budget = RateBudget::new(MinBodyRate {
            bytes_per_second: 0,
            window: Duration::from_secs(1),
        });
        budget.record(0, Duration::from_secs(100));
        assert_eq!(budget.allowance(), None);
    }
}
