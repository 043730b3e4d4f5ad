//! The actor library of auth-service: the supervision tree and the actors that own every
//! piece of state the service touches — signing keys, PostgreSQL, Redis — plus the Health
//! actor that reports on them all.
//!
//! # Layout
//!
//! - [`supervisor`]: starts the tree after validating its dependencies, restarts failed
//!   children with backoff, and escalates past the restart-intensity limit.
//! - [`key_manager`]: owns the key directory; publishes immutable key snapshots that sign
//!   and verify tokens and carry the cached JWKS.
//! - [`db`]: the Database, a pool of workers over PostgreSQL that runs every query (the SPEC's
//!   UserStore, labelled `user_store`), and its operations, one module per aggregate.
//! - [`redis`]: the Redis actor, which makes every Redis decision (the SPEC's
//!   RateLimiter/Blacklist, labelled `rate_limiter`): rate limits, the login and client gates,
//!   revocation markers and the authorization epoch, one module per concern.
//! - [`keyspace`]: every Redis key, built from the prefix and typed ids, in the hash-slot layout
//!   Redis Cluster needs.
//! - [`mailer`]: the Mailer, which delivers the mail outbox over SMTP with retries and a dead
//!   letter.
//! - [`health`]: readiness, from the supervisor's view of the children and live probes.
//! - [`supervised`]: what every actor under the supervisor shares: running as a ractor actor,
//!   and the failure hook of test builds.
//! - [`handle`]: the calling side of every actor: slots that survive restarts, timeouts, and a
//!   bound on calls in flight.
//! - [`keys`] and [`db::setup`]: the key files and the database plumbing, also used by the
//!   operator commands that run without the actor tree.
//! - [`cache`]: the bounded, counted cache both per-instance caches use.
//! - [`metrics`]: what the actors count.
//!
//! Architecture Invariant: nothing here knows about HTTP. Callers see typed handles with
//! plain async methods; no message type is built outside its actor's module.

pub mod cache;
pub mod db;
pub mod handle;
pub mod health;
pub mod key_manager;
pub mod keys;
pub mod keyspace;
pub mod mailer;
pub mod metrics;
pub mod redis;
pub mod redis_conn;
pub mod restart;
pub mod supervised;
pub mod supervisor;

pub use handle::CallError;
pub use supervisor::{RestartPolicy, Services, Settings, StartupError};
