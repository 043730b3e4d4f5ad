//! The metrics the actors record themselves: supervision (restarts, failures) and calls
//! (in flight, timeouts, saturation), plus dependency errors. The binary registers them in its
//! Prometheus registry next to its own HTTP metrics; nothing here is global, so several
//! service instances in one process (as in the integration tests) never share counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cache::{CacheCounters, CacheLabel};

/// The one label of per-actor metrics: the actor kind (`key_manager`, `user_store`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabel {
    pub actor: &'static str,
}

pub(crate) fn actor_label(actor: &'static str) -> ActorLabel {
    ActorLabel { actor }
}

/// The label of mail metrics: the mail's kind (`verify_email`, `password_reset`, ...), a fixed
/// name the code writes, never anything the recipient chose.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailLabel {
    pub kind: String,
}

/// A failed delivery attempt: the mail's kind and the class of failure (`transient` for a 4xx
/// reply, `permanent` for a 5xx or an address that cannot be sent to, `connection` when no
/// reply came: unreachable, TLS, timeout).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailFailureLabel {
    pub kind: String,
    pub reason: &'static str,
}

/// Cheap to clone: every field is an `Arc` inside.
#[derive(Clone, Debug, Default)]
pub struct ActorMetrics {
    /// Restarts performed by the supervisor, by actor kind.
    pub restarts: Family<ActorLabel, Counter>,
    /// Child failures (panics or errors) seen by the supervisor, by actor kind.
    pub failures: Family<ActorLabel, Counter>,
    /// Calls waiting for a reply, by actor kind.
    pub in_flight: Family<ActorLabel, Gauge>,
    /// Calls refused because too many were already waiting, by actor kind.
    pub overloaded: Family<ActorLabel, Counter>,
    /// Calls that got no reply within the call timeout, by actor kind.
    pub call_timeouts: Family<ActorLabel, Counter>,
    /// Errors returned by PostgreSQL or the pool (connection lost, timeout, query failure).
    pub postgres_errors: Counter,
    /// Transactions PostgreSQL aborted for conflicting with concurrent ones (deadlock,
    /// serialization failure); each was run again, up to a bound.
    pub postgres_contention: Counter,
    /// Errors returned by Redis.
    pub redis_errors: Counter,
    /// The key snapshots' caches of verified tokens: hits, misses, evictions.
    pub token_cache: Family<CacheLabel, Counter>,
    /// Mails waiting in the outbox (all instances'), as the Mailer last counted.
    pub mail_outbox_depth: Gauge,
    /// Seconds the oldest waiting mail has waited, as the Mailer last counted.
    pub mail_outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Mails this instance delivered, by kind.
    pub mail_sent: Family<MailLabel, Counter>,
    /// Failed delivery attempts, by kind and class.
    pub mail_failed_attempts: Family<MailFailureLabel, Counter>,
    /// Mails given up on, by kind.
    pub mail_dead: Family<MailLabel, Counter>,
}

impl ActorMetrics {
    /// The series of the verified-token caches.
    pub fn token_counters(&self) -> CacheCounters {
        CacheCounters::of(&self.token_cache)
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register("actor_restarts", "Actor restarts performed by the supervisor", self.restarts.clone());
        registry.register("actor_failures", "Actor failures seen by the supervisor", self.failures.clone());
        registry.register("actor_calls_in_flight", "Calls waiting for an actor's reply", self.in_flight.clone());
        registry.register(
            "actor_calls_rejected",
            "Calls refused because the actor's queue was full",
            self.overloaded.clone(),
        );
        registry.register("actor_call_timeouts", "Actor calls that timed out", self.call_timeouts.clone());
        registry.register("postgres_errors", "PostgreSQL errors", self.postgres_errors.clone());
        registry.register(
            "postgres_contention",
            "PostgreSQL transactions aborted by a deadlock or serialization failure (each is retried, up to a bound)",
            self.postgres_contention.clone(),
        );
        registry.register("redis_errors", "Redis errors", self.redis_errors.clone());
        registry.register(
            "token_cache",
            "Verified-token cache of the key snapshot: hit, miss (a signature check), eviction",
            self.token_cache.clone(),
        );
        registry.register("mail_outbox_depth", "Mails waiting in the outbox", self.mail_outbox_depth.clone());
        registry.register_with_unit(
            "mail_outbox_oldest_age",
            "How long the oldest mail waiting in the outbox has waited",
            prometheus_client::registry::Unit::Seconds,
            self.mail_outbox_oldest_age.clone(),
        );
        registry.register("mail_sent", "Mails delivered to the SMTP server, by kind", self.mail_sent.clone());
        registry.register(
            "mail_failed_attempts",
            "Failed mail delivery attempts, by kind and reason (transient, permanent, connection)",
            self.mail_failed_attempts.clone(),
        );
        registry.register("mail_dead_lettered", "Mails given up on (dead-lettered), by kind", self.mail_dead.clone());
    }

    /// Creates every per-actor series at zero, so that `increase()` and absence alerts work
    /// before the first event of each kind.
    pub fn initialise(&self, actors: &[&'static str]) {
        let _ = self.token_counters();
        for actor in actors {
            let label = actor_label(actor);
            let _ = self.restarts.get_or_create(&label);
            let _ = self.failures.get_or_create(&label);
            let _ = self.in_flight.get_or_create(&label);
            let _ = self.overloaded.get_or_create(&label);
            let _ = self.call_timeouts.get_or_create(&label);
        }
    }
}
