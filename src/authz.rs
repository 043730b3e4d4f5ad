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
//! epoch; a reader reads the epoch and then PostgreSQL, so whatever it reads from before the
//! commit is filed under an epoch that is already gone.
//!
//! Entries also expire after `AUTHZ_CACHE_TTL`, which bounds how long a change made outside the
//! API (SQL run by hand) can go unnoticed; `0s` turns the cache off.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// At most this many users are cached; beyond it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

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

pub struct AuthzCache {
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl AuthzCache {
    pub fn new(ttl: Duration) -> AuthzCache {
        AuthzCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// Applies `f` to the cached standing of `user`, if it was read under `epoch` less than the
    /// TTL ago (without copying it).
    pub fn read<R>(&self, user: Uuid, epoch: &str, f: impl FnOnce(&Standing) -> R) -> Option<R> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&user).filter(|e| e.epoch == epoch && e.at.elapsed() < self.ttl).map(|e| f(&e.standing))
    }

    /// The cached standing of `user`, if it was read under `epoch` less than the TTL ago.
    #[cfg(test)]
    pub fn get(&self, user: Uuid, epoch: &str) -> Option<Standing> {
        self.read(user, epoch, Standing::clone)
    }

    /// Files `standing`, read from the database after `epoch` was read from Redis.
    pub fn put(&self, user: Uuid, epoch: String, standing: Standing) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&user) {
            entries.clear();
        }
        entries.insert(user, Entry { epoch, at: Instant::now(), standing });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Standing {
        Standing { active: true, roles: vec!["admin".into()] }
    }

    #[test]
    fn an_entry_holds_only_under_its_epoch() {
        let cache = AuthzCache::new(Duration::from_secs(60));
        let user = Uuid::new_v4();
        assert_eq!(cache.get(user, "e1"), None);
        cache.put(user, "e1".into(), admin());
        assert_eq!(cache.get(user, "e1"), Some(admin()));
        assert_eq!(cache.get(user, "e2"), None);
        assert_eq!(cache.get(Uuid::new_v4(), "e1"), None);
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_disables_the_cache() {
        let user = Uuid::new_v4();
        let short = AuthzCache::new(Duration::from_millis(20));
        short.put(user, "e".into(), admin());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(short.get(user, "e"), None);
        let off = AuthzCache::new(Duration::ZERO);
        off.put(user, "e".into(), admin());
        assert_eq!(off.get(user, "e"), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = AuthzCache::new(Duration::from_secs(60));
        for _ in 0..MAX_ENTRIES + 5 {
            cache.put(Uuid::new_v4(), "e".into(), admin());
        }
        assert!(cache.entries.lock().expect("lock").len() <= MAX_ENTRIES);
    }
}
