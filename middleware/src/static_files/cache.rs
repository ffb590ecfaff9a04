//! A map from request paths to shared values under a byte budget, evicted by CLOCK.
//!
//! Every entry has a weight in bytes (what the caller says it holds, plus its key and a
//! fixed [`SLOT_OVERHEAD`], so that a scan of many empty files is bounded too). The sum
//! of the weights never exceeds the budget: an insert or a [`Cache::grow`] that would
//! go over it first evicts entries, and a value heavier than the whole budget is not
//! admitted at all.
//!
//! Eviction is CLOCK (second chance): a hit sets the entry's reference bit under the
//! read lock; the hand sweeps the slots, clearing set bits and evicting the first entry
//! whose bit is clear. Hot entries survive a scan of cold ones, and an insert costs
//! amortised O(1), where exact LRU would need a write lock on every hit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Bytes counted for every entry on top of its value and key: the slot, the index
/// entry, the `Arc` and the value's own fields.
pub(crate) const SLOT_OVERHEAD: u64 = 256;

/// How full the cache is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Entries held.
    pub entries: usize,
    /// Their total weight.
    pub bytes: u64,
    /// The most `bytes` may reach.
    pub budget: u64,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Stored, after evicting this many other entries.
    Stored { evicted: usize },
    /// Heavier than the whole budget: not stored.
    TooLarge,
}

/// The cache. Values are shared (`Arc`), so an evicted value lives on in the requests
/// still using it.
#[derive(Debug)]
pub(crate) struct Cache<V> {
    budget: u64,
    state: RwLock<State<V>>,
}

#[derive(Debug)]
struct State<V> {
    index: HashMap<Box<str>, usize>,
    slots: Vec<Option<Slot<V>>>,
    free: Vec<usize>,
    hand: usize,
    bytes: u64,
}

#[derive(Debug)]
struct Slot<V> {
    key: Box<str>,
    value: Arc<V>,
    weight: u64,
    referenced: AtomicBool,
}

impl<V> Cache<V> {
    /// An empty cache that holds at most `budget` bytes (0: holds nothing).
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            state: RwLock::new(State {
                index: HashMap::new(),
                slots: Vec::new(),
                free: Vec::new(),
                hand: 0,
                bytes: 0,
            }),
        }
    }

    /// The value under `key`, marked as recently used.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<V>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let slot = state.slots[*state.index.get(key)?].as_ref()?;
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(slot.value.clone())
    }

    /// Store `value` (holding `weight` bytes) under `key`, replacing what was there.
    pub(crate) fn insert(&self, key: &str, value: Arc<V>, weight: u64) -> Admission {
        let weight = weight
            .saturating_add(key.len() as u64)
            .saturating_add(SLOT_OVERHEAD);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = state.index.get(key).copied() {
            state.evict(at);
        }
        if weight > self.budget {
            return Admission::TooLarge;
        }
        let mut evicted = 0;
        while state.bytes + weight > self.budget {
            let victim = state.next_victim(None).expect("entries to evict");
            state.evict(victim);
            evicted += 1;
        }
        let slot = Slot {
            key: key.into(),
            value,
            weight,
            referenced: AtomicBool::new(false),
        };
        let at = match state.free.pop() {
            Some(at) => {
                state.slots[at] = Some(slot);
                at
            }
            None => {
                state.slots.push(Some(slot));
                state.slots.len() - 1
            }
        };
        state.index.insert(key.into(), at);
        state.bytes += weight;
        Admission::Stored { evicted }
    }

    /// Count `extra` more bytes for the entry under `key`, if it still holds `value`
    /// (it grew a compressed variant), evicting others to stay within the budget.
    /// Returns false if the entry is gone or was dropped because it alone is now over
    /// the budget.
    pub(crate) fn grow(&self, key: &str, value: &Arc<V>, extra: u64) -> bool {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let Some(at) = state.index.get(key).copied() else {
            return false;
        };
        let slot = state.slots[at].as_mut().expect("indexed slot");
        if !Arc::ptr_eq(&slot.value, value) {
            return false;
        }
        slot.weight = slot.weight.saturating_add(extra);
        state.bytes = state.bytes.saturating_add(extra);
        while state.bytes > self.budget {
            match state.next_victim(Some(at)) {
                Some(victim) => state.evict(victim),
                None => {
                    state.evict(at);
                    return false;
                }
            }
        }
        true
    }

    /// Drop the entry under `key` if it still holds `value`.
    pub(crate) fn remove(&self, key: &str, value: &Arc<V>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let Some(at) = state.index.get(key).copied() else {
            return;
        };
        let same = state.slots[at]
            .as_ref()
            .is_some_and(|slot| Arc::ptr_eq(&slot.value, value));
        if same {
            state.evict(at);
        }
    }

    /// Entries, bytes and budget.
    pub(crate) fn usage(&self) -> Usage {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Usage {
            entries: state.index.len(),
            bytes: state.bytes,
            budget: self.budget,
        }
    }
}

impl<V> State<V> {
    /// Advance the hand to the next entry to evict (never `spare`), giving referenced
    /// entries a second chance. None when `spare` is the only entry left.
    fn next_victim(&mut self, spare: Option<usize>) -> Option<usize> {
        let others = self.index.len() - usize::from(spare.is_some());
        if others == 0 {
            return None;
        }
        // Two sweeps clear every reference bit, so the loop ends within them.
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let at = self.hand;
            self.hand += 1;
            if Some(at) == spare {
                continue;
            }
            let Some(slot) = self.slots[at].as_ref() else {
                continue;
            };
            if slot.referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            return Some(at);
        }
    }

    fn evict(&mut self, at: usize) {
        if let Some(slot) = self.slots[at].take() {
            self.index.remove(&slot.key);
            self.bytes -= slot.weight;
            self.free.push(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight_of(key: &str, bytes: u64) -> u64 {
        bytes + key.len() as u64 + SLOT_OVERHEAD
    }

    #[test]
    fn a_scan_of_many_entries_stays_within_the_budget() {
        let budget = 64 * 1024;
        let cache = Cache::new(budget);
        let mut evictions = 0;
        for n in 0..10_000u64 {
            let key = format!("/file-{n}.css");
            match cache.insert(&key, Arc::new(n), 1000 + n % 700) {
                Admission::Stored { evicted } => evictions += evicted,
                Admission::TooLarge => panic!("{key} is smaller than the budget"),
            }
            let usage = cache.usage();
            assert!(usage.bytes <= budget, "{usage:?} after {key}");
        }
        assert!(evictions > 9_000, "{evictions}");
        let usage = cache.usage();
        assert!(usage.entries > 20, "{usage:?}");
        assert_eq!(cache.get("/file-9999.css").as_deref(), Some(&9999));
        assert!(cache.get("/file-0.css").is_none());
    }

    #[test]
    fn empty_values_are_bounded_by_their_overhead() {
        let cache = Cache::new(10 * SLOT_OVERHEAD);
        for n in 0..1000 {
            cache.insert(&format!("/{n}"), Arc::new(()), 0);
        }
        let usage = cache.usage();
        assert!(
            usage.bytes <= usage.budget && usage.entries < 10,
            "{usage:?}"
        );
    }

    #[test]
    fn hot_entries_survive_a_scan_of_cold_ones() {
        let cache = Cache::new(weight_of("/hot", 100) + 3 * weight_of("/cold-0", 100));
        cache.insert("/hot", Arc::new(0), 100);
        for n in 0..50 {
            assert!(cache.get("/hot").is_some(), "evicted before cold-{n}");
            cache.insert(&format!("/cold-{n}"), Arc::new(n), 100);
        }
        assert!(cache.get("/hot").is_some());
    }

    #[test]
    fn too_large_values_are_refused_and_replacing_frees_the_old_weight() {
        let cache = Cache::new(4096);
        assert_eq!(
            cache.insert("/huge", Arc::new(1), 4096),
            Admission::TooLarge
        );
        assert_eq!(cache.usage().entries, 0);
        cache.insert("/a", Arc::new(1), 1000);
        cache.insert("/a", Arc::new(2), 2000);
        let usage = cache.usage();
        assert_eq!((usage.entries, usage.bytes), (1, weight_of("/a", 2000)));
        assert_eq!(cache.get("/a").as_deref(), Some(&2));
        // Replacing with something too large drops the old value too.
        assert_eq!(cache.insert("/a", Arc::new(3), 9000), Admission::TooLarge);
        assert!(cache.get("/a").is_none());
        assert_eq!(cache.usage().bytes, 0);
    }

    #[test]
    fn nothing_is_held_with_a_zero_budget() {
        let cache = Cache::new(0);
        assert_eq!(cache.insert("/a", Arc::new(1), 0), Admission::TooLarge);
        assert!(cache.get("/a").is_none());
    }

    #[test]
    fn growing_evicts_others_and_only_counts_for_the_same_value() {
        let budget = 3 * weight_of("/a", 1000);
        let cache = Cache::new(budget);
        let a = Arc::new(1);
        cache.insert("/a", a.clone(), 1000);
        cache.insert("/b", Arc::new(2), 1000);
        cache.insert("/c", Arc::new(3), 1000);
        assert!(cache.grow("/a", &a, 1000));
        let usage = cache.usage();
        assert!(usage.bytes <= budget, "{usage:?}");
        assert_eq!(usage.entries, 2);
        assert!(cache.get("/a").is_some());
        // A stale value (the file changed and was reloaded) does not grow the new one.
        assert!(!cache.grow("/a", &Arc::new(1), 10));
        // Growing past the whole budget drops the entry itself.
        assert!(!cache.grow("/a", &a, budget));
        assert!(cache.get("/a").is_none());
        assert!(cache.usage().bytes <= budget);
    }

    #[test]
    fn removing_only_removes_the_same_value() {
        let cache = Cache::new(4096);
        let value = Arc::new(1);
        cache.insert("/a", value.clone(), 10);
        cache.remove("/a", &Arc::new(1));
        assert!(cache.get("/a").is_some(), "another value under the key");
        cache.remove("/a", &value);
        assert!(cache.get("/a").is_none());
        assert_eq!(cache.usage().bytes, 0);
    }
}
