//! Picking a server: smooth weighted round robin (nginx's), least requests in flight
//! relative to weight, or rendezvous hashing on a request key (sticky sessions that
//! move only the keys of a server that leaves).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use http::{header, Request};

use crate::config::{Balance, HashKey};
use crate::types::ConnectionInfo;

/// What the balancer needs to know of a server.
pub(crate) trait Candidate {
    /// Its weight (1..=100).
    fn weight(&self) -> u32;
    /// Requests in flight to it.
    fn in_flight(&self) -> usize;
    /// Health allows requests now.
    fn available(&self, now: u64) -> bool;
}

/// Servers already tried for a request (at most 64 servers are tracked; beyond that
/// a retry may pick the same server again).
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Tried(u64);

impl Tried {
    pub(crate) fn insert(&mut self, index: usize) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }

    pub(crate) fn contains(self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }
}

/// The balancing policy of one upstream, with its state.
pub(crate) struct Balancer {
    policy: Balance,
    key: HashKey,
    /// Server indices in smooth weighted round-robin order, one cycle.
    sequence: Vec<usize>,
    next: AtomicUsize,
}

impl Balancer {
    pub(crate) fn new(policy: Balance, key: HashKey, weights: &[u32]) -> Self {
        Self {
            policy,
            key,
            sequence: smooth_weighted_cycle(weights),
            next: AtomicUsize::new(0),
        }
    }

    /// The request's hash key under `balance = "hash"` (None: no key, round robin).
    pub(crate) fn request_key(&self, request: &Request<Body>) -> Option<u64> {
        if self.policy != Balance::Hash {
            return None;
        }
        let mut hasher = std::hash::DefaultHasher::new();
        match &self.key {
            HashKey::ClientIp => request
                .extensions()
                .get::<ConnectionInfo>()
                .and_then(|info| info.peer)?
                .ip()
                .hash(&mut hasher),
            HashKey::Header(name) => request.headers().get(name)?.as_bytes().hash(&mut hasher),
            HashKey::Cookie(name) => cookie(request, name)?.hash(&mut hasher),
        }
        Some(hasher.finish())
    }

    /// The server for the next attempt: available, not yet tried; None when no server
    /// is left.
    pub(crate) fn pick<C: Candidate>(
        &self,
        servers: &[C],
        key: Option<u64>,
        tried: Tried,
        now: u64,
    ) -> Option<usize> {
        let eligible = |index: usize| !tried.contains(index) && servers[index].available(now);
        match (self.policy, key) {
            (Balance::Hash, Some(key)) => {
                (0..servers.len())
                    .filter(|&i| eligible(i))
                    .max_by(|&a, &b| {
                        rendezvous(key, a, servers[a].weight()).total_cmp(&rendezvous(
                            key,
                            b,
                            servers[b].weight(),
                        ))
                    })
            }
            (Balance::LeastRequests, _) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let count = servers.len();
                let mut best: Option<usize> = None;
                for offset in 0..count {
                    let index = (start + offset) % count;
                    if !eligible(index) {
                        continue;
                    }
                    best = match best {
                        // fewer in flight per weight: a/wa < b/wb  <=>  a*wb < b*wa
                        Some(b)
                            if (servers[index].in_flight() as u64)
                                * u64::from(servers[b].weight())
                                >= (servers[b].in_flight() as u64)
                                    * u64::from(servers[index].weight()) =>
                        {
                            Some(b)
                        }
                        _ => Some(index),
                    };
                }
                best
            }
            _ => {
                let cycle = self.sequence.len();
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..cycle)
                    .map(|offset| self.sequence[(start + offset) % cycle])
                    .find(|&index| eligible(index))
            }
        }
    }
}

/// A cookie's value from the request's `Cookie` fields.
fn cookie<'a>(request: &'a Request<Body>, name: &str) -> Option<&'a [u8]> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (key, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (key == name.as_bytes()).then_some(&value[1..])
        })
}

/// Weighted rendezvous score of server `index` for `key` (highest wins).
fn rendezvous(key: u64, index: usize, weight: u32) -> f64 {
    let mut hasher = std::hash::DefaultHasher::new();
    (key, index).hash(&mut hasher);
    // A uniform number in (0, 1), from 53 bits of the hash.
    let unit = ((hasher.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / unit.ln()
}

/// One cycle of nginx's smooth weighted round robin: weights 5, 1, 1 give
/// a a b a c a a, never a burst of one server.
fn smooth_weighted_cycle(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (index, weight) in weights.iter().enumerate() {
            current[index] += i64::from(*weight);
            if current[index] > current[best] {
                best = index;
            }
        }
        current[best] -= total;
        cycle.push(best);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        weight: u32,
        in_flight: usize,
        up: bool,
    }

    impl Candidate for Fake {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn in_flight(&self) -> usize {
            self.in_flight
        }
        fn available(&self, _: u64) -> bool {
            self.up
        }
    }

    fn fake(weight: u32, in_flight: usize, up: bool) -> Fake {
        Fake {
            weight,
            in_flight,
            up,
        }
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves() {
        assert_eq!(smooth_weighted_cycle(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_cycle(&[1, 1]), vec![0, 1]);
    }

    #[test]
    fn round_robin_skips_unavailable_and_tried_servers() {
        let balancer = Balancer::new(Balance::RoundRobin, HashKey::ClientIp, &[1, 1, 1]);
        let servers = [fake(1, 0, true), fake(1, 0, false), fake(1, 0, true)];
        let picks: Vec<_> = (0..4)
            .map(|_| balancer.pick(&servers, None, Tried::default(), 0).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        let mut tried = Tried::default();
        tried.insert(0);
        tried.insert(2);
        assert_eq!(balancer.pick(&servers, None, tried, 0), None);
    }

    #[test]
    fn least_requests_by_weight() {
        let balancer = Balancer::new(Balance::LeastRequests, HashKey::ClientIp, &[1, 2]);
        let servers = [fake(1, 2, true), fake(2, 3, true)];
        assert_eq!(balancer.pick(&servers, None, Tried::default(), 0), Some(1));
    }

    #[test]
    fn hashing_is_sticky_and_moves_only_the_lost_servers_keys() {
        let balancer = Balancer::new(Balance::Hash, HashKey::ClientIp, &[1, 1, 1]);
        let all = [fake(1, 0, true), fake(1, 0, true), fake(1, 0, true)];
        let without_1 = [fake(1, 0, true), fake(1, 0, false), fake(1, 0, true)];
        for key in 0..200u64 {
            let first = balancer.pick(&all, Some(key), Tried::default(), 0);
            assert_eq!(first, balancer.pick(&all, Some(key), Tried::default(), 0));
            let after = balancer.pick(&without_1, Some(key), Tried::default(), 0);
            if first != Some(1) {
                assert_eq!(after, first, "key {key} moved though its server stayed");
            }
        }
    }
}
