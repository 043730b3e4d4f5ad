//! The callers' current standing (active, and which roles they hold), cached per instance.
//!
//! Admin routes and introspection require a role the caller holds *now*, not the roles written
//! in its token. Reading them from PostgreSQL on every call made that query the bound of those
//! routes, so each instance caches them, keyed by the **authorization epoch**: a random value in
//! Redis that is replaced whenever a user's roles or standing change through the API (role
//! assigned, removed, renamed or deleted; user renamed or deleted; address verified or changed).
//! The standing also carries the account's current username and email and whether that email is
//! verified, which every answer about a token reports instead of the names the token was issued
//! with. The epoch is read in the same Redis
//! round trip as the caller's revocation markers, and a cached entry is used only while the
//! epoch it was read under is still current, so such a change takes effect at once on every
//! instance. The order makes that safe: a writer commits to PostgreSQL and then replaces the
//! epoch (the Database does it for every operation that says it changes standing, before it
//! answers); a reader reads the epoch and then PostgreSQL, so whatever it reads from before the
//! commit is filed under an epoch that is already gone.
//!
//! The same epoch guards the OAuth clients each instance caches (`crate::oauth::protocol::ClientCache`): every
//! registration change (update, secret rotation, deletion) replaces it too.
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
    /// The names the account has now: a token's `username` and `email` claims are those of
    /// when it was issued, and after a rename another account may hold them.
    pub username: String,
    pub email: String,
    /// Whether `email` was confirmed by a mailed link; a verification or a change of address
    /// replaces the epoch like a rename.
    pub email_verified: bool,
}

struct Entry<V> {
    epoch: String,
    at: Instant,
    value: V,
}

/// A cached value, shared (not copied) with the request that reads it.
pub struct Cached<V>(Arc<Entry<V>>);

impl<V> Clone for Cached<V> {
    fn clone(&self) -> Self {
        Cached(self.0.clone())
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for Cached<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.value.fmt(f)
    }
}

impl<V> std::ops::Deref for Cached<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.0.value
    }
}

/// Values read from PostgreSQL, each filed under the epoch read before it and kept at most
/// the TTL.
pub struct EpochCache<K, V> {
    ttl: Duration,
    entries: BoundedCache<K, Cached<V>>,
}

/// Callers' standing, by user.
pub type AuthzCache = EpochCache<Uuid, Standing>;

impl<K: Eq + std::hash::Hash + Clone, V> EpochCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize, counters: CacheCounters) -> Self {
        EpochCache { ttl, entries: BoundedCache::new(capacity, counters) }
    }

    /// The cached value of `key`, if it was read under `epoch` less than the TTL ago.
    pub fn get<Q>(&self, key: &Q, epoch: &str) -> Option<Cached<V>>
    where
        Q: std::hash::Hash + auth_actors::cache::Equivalent<K> + ?Sized,
    {
        if self.ttl.is_zero() {
            return None;
        }
        self.entries.get(key, |e| e.0.epoch == epoch && e.0.at.elapsed() < self.ttl)
    }

    /// The cached value of `key` read less than the TTL ago, under whichever epoch: for what may
    /// lag a change by up to the TTL (a page that decides nothing), never for a decision.
    pub fn get_recent<Q>(&self, key: &Q) -> Option<Cached<V>>
    where
        Q: std::hash::Hash + auth_actors::cache::Equivalent<K> + ?Sized,
    {
        if self.ttl.is_zero() {
            return None;
        }
        self.entries.get(key, |e| e.0.at.elapsed() < self.ttl)
    }

    /// Files `value`, read from the database after `epoch` was read from Redis; returns it as
    /// cached. Without an epoch (Redis had none) or with the cache off, nothing is filed.
    pub fn put(&self, key: K, epoch: Option<String>, value: V) -> Cached<V> {
        let file = epoch.is_some() && !self.ttl.is_zero();
        let cached = Cached(Arc::new(Entry { epoch: epoch.unwrap_or_default(), at: Instant::now(), value }));
        if file {
            self.entries.insert(key, cached.clone());
        }
        cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Standing {
        Standing {
            active: true,
            roles: vec!["admin".into()],
            username: "root".into(),
            email: "root@example.com".into(),
            email_verified: true,
        }
    }

    fn cache(ttl: Duration, capacity: usize) -> AuthzCache {
        AuthzCache::new(ttl, capacity, CacheCounters::default())
    }

    #[test]
    fn an_entry_holds_only_under_its_epoch() {
        let cache = cache(Duration::from_secs(60), 100);
        let user = Uuid::new_v4();
        assert!(cache.get(&user, "e1").is_none());
        cache.put(user, Some("e1".into()), admin());
        assert_eq!(cache.get(&user, "e1").as_deref(), Some(&admin()));
        assert!(cache.get(&user, "e2").is_none());
        assert!(cache.get(&Uuid::new_v4(), "e1").is_none());
    }

    #[test]
    fn a_recent_entry_holds_under_any_epoch_until_the_ttl() {
        let user = Uuid::new_v4();
        let short = cache(Duration::from_millis(30), 100);
        assert!(short.get_recent(&user).is_none());
        short.put(user, Some("e1".into()), admin());
        assert!(short.get(&user, "e2").is_none());
        assert_eq!(short.get_recent(&user).as_deref(), Some(&admin()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(short.get_recent(&user).is_none());
        let off = cache(Duration::ZERO, 100);
        off.put(user, Some("e".into()), admin());
        assert!(off.get_recent(&user).is_none());
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_disables_the_cache() {
        let user = Uuid::new_v4();
        let short = cache(Duration::from_millis(20), 100);
        short.put(user, Some("e".into()), admin());
        std::thread::sleep(Duration::from_millis(40));
        assert!(short.get(&user, "e").is_none());
        let off = cache(Duration::ZERO, 100);
        off.put(user, Some("e".into()), admin());
        assert!(off.get(&user, "e").is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_a_reused_entry() {
        let counters = CacheCounters::default();
        let cache = AuthzCache::new(Duration::from_secs(60), 1000, counters.clone());
        let regular = Uuid::new_v4();
        cache.put(regular, Some("e".into()), admin());
        for _ in 0..5000 {
            assert!(cache.get(&regular, "e").is_some());
            cache.put(Uuid::new_v4(), Some("e".into()), admin());
        }
        assert!(cache.entries.len() <= 1000);
        assert!(counters.evictions.get() >= 4000);
    }
}
