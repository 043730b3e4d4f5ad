//! A bounded, concurrent cache with real eviction, counted.
//!
//! Both per-instance caches of the service (verified tokens, in each key snapshot; callers'
//! standing, in the server's `authz` module) sit on the hot path of every authenticated
//! request, and both are filled by clients: a cache that emptied itself when full would let a
//! stream of distinct tokens evict every hot entry at once, and the hit rate would fall off a
//! cliff just past its size. This one is `quick_cache`'s (CLOCK-PRO style: a new key must be
//! seen again before it can push out a key that is reused), sharded, so one-off keys churn the
//! cold part while reused keys stay. `moka` (TinyLFU) was measured beside it; see
//! docs/BENCHMARKS.md.
//!
//! Hits, misses and evictions are counted in Prometheus counters the caller owns.

use std::hash::Hash;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use quick_cache::Equivalent;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

/// The one label of a cache's counter family: `hit`, `miss` or `eviction`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub result: &'static str,
}

/// The counters of one cache, held (not looked up) so that the hot path only adds.
#[derive(Clone, Debug, Default)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
    pub evictions: Counter,
}

impl CacheCounters {
    /// The `hit`, `miss` and `eviction` series of `family`, created at zero.
    pub fn of(family: &Family<CacheLabel, Counter>) -> CacheCounters {
        let series = |result| family.get_or_create(&CacheLabel { result }).clone();
        CacheCounters { hits: series("hit"), misses: series("miss"), evictions: series("eviction") }
    }
}

/// Collects the keys an insert pushed out. quick_cache reports a value replaced under its own
/// key through the same hook as an eviction; [`BoundedCache::insert`] tells them apart.
#[derive(Clone)]
struct Collect;

impl<K, V> Lifecycle<K, V> for Collect {
    type RequestState = Vec<K>;

    fn on_evict(&self, state: &mut Vec<K>, key: K, _val: V) {
        state.push(key);
    }
}

/// At most `capacity` entries; values are cloned out, so they should be cheap to clone.
pub struct BoundedCache<K, V> {
    inner: Cache<K, V, UnitWeighter, DefaultHashBuilder, Collect>,
    counters: CacheCounters,
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedCache<K, V> {
    pub fn new(capacity: usize, counters: CacheCounters) -> Self {
        let capacity = capacity.max(1);
        let inner = Cache::with(capacity, capacity as u64, UnitWeighter, DefaultHashBuilder::default(), Collect);
        BoundedCache { inner, counters }
    }

    /// The entry for `key`, counted as a hit or a miss. `accept` can turn a present entry into a
    /// miss (an entry that is stale for the caller's purpose).
    pub fn get<Q>(&self, key: &Q, accept: impl FnOnce(&V) -> bool) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        match self.inner.get(key).filter(|v| accept(v)) {
            Some(v) => {
                self.counters.hits.inc();
                Some(v)
            }
            None => {
                self.counters.misses.inc();
                None
            }
        }
    }

    /// Stores `value` under `key`, evicting what the policy chooses when the cache is full.
    pub fn insert(&self, key: K, value: V) {
        let mut pushed_out = Vec::new();
        self.inner.insert_with_lifecycle(key.clone(), value, &mut pushed_out);
        let evicted = pushed_out.iter().filter(|k| **k != key).count();
        if evicted > 0 {
            self.counters.evictions.inc_by(evicted as u64);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_entry_survives_a_stream_of_one_off_entries() {
        let counters = CacheCounters::default();
        let cache = BoundedCache::new(1000, counters.clone());
        cache.insert(0u64, 0u64);
        for i in 1..20_000u64 {
            assert!(cache.get(&0u64, |_| true).is_some(), "the hot entry went after {i} one-off entries");
            if cache.get(&i, |_| true).is_none() {
                cache.insert(i, i);
            }
        }
        assert!(cache.len() <= 1000 + 1000 / 10, "bounded: {}", cache.len());
        assert!(counters.evictions.get() > 18_000);
        assert_eq!(counters.hits.get(), 19_999);
    }

    #[test]
    fn a_replaced_value_is_not_an_eviction() {
        let counters = CacheCounters::default();
        let cache = BoundedCache::new(100, counters.clone());
        for i in 0..50u64 {
            cache.insert(1u64, i);
            cache.insert(i, i);
        }
        assert_eq!(counters.evictions.get(), 0);
        assert_eq!(cache.get(&1, |_| true), Some(49));
    }

    #[test]
    fn an_entry_the_caller_refuses_is_a_miss() {
        let counters = CacheCounters::default();
        let cache = BoundedCache::new(10, counters.clone());
        cache.insert("k", 1);
        assert_eq!(cache.get("k", |v| *v == 2), None);
        assert_eq!(cache.get("k", |v| *v == 1), Some(1));
        assert_eq!((counters.hits.get(), counters.misses.get()), (1, 1));
    }
}
