//! The callers' current standing (active, and which roles they hold), cached per instance.
//!
//! Admin routes and introspection require a role the caller holds *now*, not the roles written
//! in its token. Reading them from PostgreSQL on every call made that query the bound of those
//! routes, so each instance caches them, keyed by the **authorization epoch**: a random value in
//! Redis that is replaced whenever a user's roles or standing change through the API (role
//! assigned, removed, renamed or deleted; user deleted). The epoch is read in the same Redis
//! round trip as the caller's revocation markers, and a cached entry is used only while the
//! epoch it was read under is still current, so such a change takes effect at once on every
//! instance. The order makes that safe: a writer commits to PostgreSQL and then replaces the
//! epoch (the UserStore does it for every operation that says it changes standing, before it
//! answers); a reader reads the epoch and then PostgreSQL, so whatever it reads from before the
//! commit is filed under an epoch that is already gone.
//!
//! Entries also expire after `AUTHZ_CACHE_TTL`, which bounds how long a change made outside the
//! API (SQL run by hand) can go unnoticed; `0s` turns the cache off. At most `AUTHZ_CACHE_SIZE`
//! users are cached; past that the least useful entries are evicted one by one (see
//! `auth_actors::cache`), so a crowd of one-off callers does not push out the regular ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_actors::cache::{BoundedCache, CacheCounters};
use uuid::Uuid;

/// What authorization needs to know about a user now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The user exists and is active.
    pub active: bool,
    pub roles: Vec<String>,
}

struct Entry {
    epoch: String,
    at: Instant,
    standing: Standing,
}

/// A cached standing, shared (not copied) with the request that reads it.
#[derive(Clone)]
pub struct Cached(Arc<Entry>);

impl std::ops::Deref for Cached {
    type Target = Standing;
    fn deref(&self) -> &Standing {
        &self.0.standing
    }
}

pub struct AuthzCache {
    ttl: Duration,
    entries: BoundedCache<Uuid, Cached>,
}

impl AuthzCache {
    pub fn new(ttl: Duration, capacity: usize, counters: CacheCounters) -> AuthzCache {
        AuthzCache { ttl, entries: BoundedCache::new(capacity, counters) }
    }

    /// The cached standing of `user`, if it was read under `epoch` less than the TTL ago.
    pub fn get(&self, user: Uuid, epoch: &str) -> Option<Cached> {
        if self.ttl.is_zero() {
            return None;
        }
        self.entries.get(&user, |e| e.0.epoch == epoch && e.0.at.elapsed() < self.ttl)
    }

    /// Files `standing`, read from the database after `epoch` was read from Redis.
    pub fn put(&self, user: Uuid, epoch: String, standing: Standing) {
        if self.ttl.is_zero() {
            return;
        }
        self.entries.insert(user, Cached(Arc::new(Entry { epoch, at: Instant::now(), standing })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Standing {
        Standing { active: true, roles: vec!["admin".into()] }
    }

    fn cache(ttl: Duration, capacity: usize) -> AuthzCache {
        AuthzCache::new(ttl, capacity, CacheCounters::default())
    }

    #[test]
    fn an_entry_holds_only_under_its_epoch() {
        let cache = cache(Duration::from_secs(60), 100);
        let user = Uuid::new_v4();
        assert!(cache.get(user, "e1").is_none());
        cache.put(user, "e1".into(), admin());
        assert_eq!(cache.get(user, "e1").as_deref(), Some(&admin()));
        assert!(cache.get(user, "e2").is_none());
        assert!(cache.get(Uuid::new_v4(), "e1").is_none());
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_disables_the_cache() {
        let user = Uuid::new_v4();
        let short = cache(Duration::from_millis(20), 100);
        short.put(user, "e".into(), admin());
        std::thread::sleep(Duration::from_millis(40));
        assert!(short.get(user, "e").is_none());
        let off = cache(Duration::ZERO, 100);
        off.put(user, "e".into(), admin());
        assert!(off.get(user, "e").is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_a_reused_entry() {
        let counters = CacheCounters::default();
        let cache = AuthzCache::new(Duration::from_secs(60), 1000, counters.clone());
        let regular = Uuid::new_v4();
        cache.put(regular, "e".into(), admin());
        for _ in 0..5000 {
            assert!(cache.get(regular, "e").is_some());
            cache.put(Uuid::new_v4(), "e".into(), admin());
        }
        assert!(cache.entries.len() <= 1000);
        assert!(counters.evictions.get() >= 4000);
    }
}
