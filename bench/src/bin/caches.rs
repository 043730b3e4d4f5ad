//! The two bounded caches the service could use for its verified-token and standing caches,
//! measured side by side under the access patterns those caches see: `quick_cache` (what the
//! service uses, through `auth_actors::cache`) and `moka` (TinyLFU). Every core runs the same
//! loop of look-ups, inserting on a miss.
//!
//! Patterns, with a cache of CAPACITY entries (default 4096):
//! - `hot`: one key (one client reusing its token);
//! - `cycle`: 10 000 keys in turn, more than the cache holds (the many-users scenario);
//! - `skewed`: 90 % of look-ups over 1 000 regular keys, 10 % one-off keys never seen again
//!   (regular callers among a stream of strangers); the hit rate of the regular keys is what
//!   matters.
//!
//! Usage: caches [SECONDS_PER_RUN] [CAPACITY]. Prints one JSON object.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Value = Arc<[u8; 256]>;

trait Cache: Send + Sync + 'static {
    fn get(&self, key: u64) -> Option<Value>;
    fn insert(&self, key: u64, value: Value);
}

struct Quick(quick_cache::sync::Cache<u64, Value>);

impl Cache for Quick {
    fn get(&self, key: u64) -> Option<Value> {
        self.0.get(&key)
    }
    fn insert(&self, key: u64, value: Value) {
        self.0.insert(key, value);
    }
}

struct Moka(moka::sync::Cache<u64, Value>);

impl Cache for Moka {
    fn get(&self, key: u64) -> Option<Value> {
        self.0.get(&key)
    }
    fn insert(&self, key: u64, value: Value) {
        self.0.insert(key, value);
    }
}

#[derive(Clone, Copy)]
enum Pattern {
    Hot,
    Cycle,
    Skewed,
}

/// The key of look-up `i` of thread `t`, and whether it is a regular (reused) key.
fn key(pattern: Pattern, t: u64, i: u64) -> (u64, bool) {
    match pattern {
        Pattern::Hot => (1, true),
        Pattern::Cycle => ((i + t * 4999) % 10_000, true),
        Pattern::Skewed => {
            // A cheap, fixed pseudo-random stream per thread.
            let x = (i ^ (t << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if x.is_multiple_of(10) { (1_000_000 + (t << 40) + i, false) } else { ((x >> 8) % 1_000, true) }
        }
    }
}

struct Outcome {
    ns_per_op: f64,
    hit_rate: f64,
}

fn run(cache: Arc<dyn Cache>, pattern: Pattern, seconds: f64) -> Outcome {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let (ops, regular, regular_hits) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let value: Value = Arc::new([7u8; 256]);
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|t| {
            let (cache, stop, value) = (cache.clone(), stop.clone(), value.clone());
            let (ops, regular, regular_hits) = (ops.clone(), regular.clone(), regular_hits.clone());
            std::thread::spawn(move || {
                let (mut n, mut r, mut h) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        let (k, is_regular) = key(pattern, t, n);
                        let hit = cache.get(k).is_some();
                        if !hit {
                            cache.insert(k, value.clone());
                        }
                        if is_regular {
                            r += 1;
                            h += u64::from(hit);
                        }
                        n += 1;
                    }
                }
                ops.fetch_add(n, Ordering::Relaxed);
                regular.fetch_add(r, Ordering::Relaxed);
                regular_hits.fetch_add(h, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ops = ops.load(Ordering::Relaxed) as f64;
    Outcome {
        // Wall time per look-up per thread: what one request waits.
        ns_per_op: elapsed * 1e9 * cores as f64 / ops,
        hit_rate: regular_hits.load(Ordering::Relaxed) as f64 / regular.load(Ordering::Relaxed).max(1) as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let capacity: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let mut out = serde_json::Map::new();
    for (name, pattern) in [("hot", Pattern::Hot), ("cycle", Pattern::Cycle), ("skewed", Pattern::Skewed)] {
        let quick: Arc<dyn Cache> = Arc::new(Quick(quick_cache::sync::Cache::new(capacity)));
        let moka: Arc<dyn Cache> = Arc::new(Moka(moka::sync::Cache::new(capacity as u64)));
        for (library, cache) in [("quick_cache", quick), ("moka", moka)] {
            let o = run(cache, pattern, seconds);
            out.insert(
                format!("{name}/{library}"),
                serde_json::json!({ "ns_per_op": o.ns_per_op, "hit_rate": o.hit_rate }),
            );
        }
    }
    out.insert("capacity".into(), capacity.into());
    println!("{}", serde_json::Value::Object(out));
}
