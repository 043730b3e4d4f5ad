//! The service's Prometheus metrics, in one registry per running instance, rendered in the
//! text exposition format by `GET /metrics`. Labels are low-cardinality by construction: the
//! route template (never the raw path), the method, the status code, and fixed outcome names.

use std::sync::{Arc, LazyLock};

use auth_actors::cache::CacheLabel;
use auth_actors::metrics::ActorMetrics;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub method: &'static str,
}

/// A fixed outcome name (`success`, `rotated`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    success,
    failure,
    locked,
    rotated,
    retried,
    reuse_detected,
    invalid,
    served,
    not_modified,
}

/// A token request's grant type (`client_credentials`, `refresh_token`, `other`) and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant_type: &'static str,
    pub outcome: GrantOutcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum GrantOutcome {
    issued,
    invalid_request,
    invalid_client,
    invalid_grant,
    unauthorized_client,
    unsupported_grant_type,
    invalid_scope,
    invalid_target,
    throttled,
    error,
}

/// A client authentication method (`client_secret_basic`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: &'static str,
}

/// A check of a new password: which source answered and what it said.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PasswordCheckLabels {
    pub source: CheckSource,
    pub outcome: CheckOutcome,
}

/// Where a new password was checked: the bundled list, or the k-anonymity range API.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CheckSource {
    blocklist,
    range_api,
}

/// `accepted`, `refused`, or `error` (the range API could not answer; the password was then
/// accepted or refused as `PWNED_PASSWORDS_FAIL_CLOSED` says).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CheckOutcome {
    accepted,
    refused,
    error,
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    pub actors: ActorMetrics,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub logins: Family<OutcomeLabels, Counter>,
    pub tokens_issued: Counter,
    pub refreshes: Family<OutcomeLabels, Counter>,
    pub rate_limited: Family<ClassLabels, Counter>,
    pub lockouts: Counter,
    pub hash_duration: Histogram,
    pub hash_queue: Gauge,
    pub hash_rejected: Counter,
    pub active_key_age: Gauge,
    pub jwks: Family<OutcomeLabels, Counter>,
    /// Look-ups of callers' standing: hit, miss, eviction (the cache holds its series).
    pub authz_cache: Family<CacheLabel, Counter>,
    /// Look-ups of OAuth clients' registrations: hit, miss, eviction.
    pub client_cache: Family<CacheLabel, Counter>,
    /// Token-endpoint requests by grant type and outcome.
    pub token_requests: Family<GrantLabels, Counter>,
    /// Failed client authentications by the method tried.
    pub client_auth_failures: Family<MethodLabels, Counter>,
    /// Time of one request to the k-anonymity range API, failed ones included.
    pub range_api_duration: Histogram,
    pub db_pool_max: Gauge,
    pub db_pool_size: Gauge,
    pub db_pool_available: Gauge,
    pub db_pool_waiting: Gauge,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0].into_iter()
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("auth");
        let actors = ActorMetrics::default();
        actors.register(&mut registry);
        let m = Metrics {
            actors,
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            logins: Family::default(),
            tokens_issued: Counter::default(),
            refreshes: Family::default(),
            rate_limited: Family::default(),
            lockouts: Counter::default(),
            hash_duration: Histogram::new([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0]),
            hash_queue: Gauge::default(),
            hash_rejected: Counter::default(),
            active_key_age: Gauge::default(),
            jwks: Family::default(),
            authz_cache: Family::default(),
            client_cache: Family::default(),
            token_requests: Family::default(),
            client_auth_failures: Family::default(),
            range_api_duration: Histogram::new(latency_buckets()),
            db_pool_max: Gauge::default(),
            db_pool_size: Gauge::default(),
            db_pool_available: Gauge::default(),
            db_pool_waiting: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "HTTP requests by route template, method and status", m.requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency by route template and method",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register("logins", "Login attempts by result", m.logins.clone());
        registry.register("tokens_issued", "Access tokens issued", m.tokens_issued.clone());
        registry.register("refreshes", "Refresh attempts by outcome", m.refreshes.clone());
        registry.register("rate_limited", "Requests denied by a rate limit, by class", m.rate_limited.clone());
        registry.register("lockouts", "Account lockouts started", m.lockouts.clone());
        registry.register_with_unit(
            "argon2_duration",
            "Time of one argon2 hash or verify",
            Unit::Seconds,
            m.hash_duration.clone(),
        );
        registry.register("argon2_queue_depth", "Hashing jobs running or waiting", m.hash_queue.clone());
        registry.register(
            "argon2_rejected",
            "Hashing jobs refused after waiting HASH_QUEUE_TIMEOUT for a slot",
            m.hash_rejected.clone(),
        );
        registry.register_with_unit(
            "active_key_age",
            "Age of the active signing key",
            Unit::Seconds,
            m.active_key_age.clone(),
        );
        registry.register(
            "authz_cache",
            "Look-ups of a caller's current roles: hit (cached under the current epoch), miss (read from PostgreSQL), eviction",
            m.authz_cache.clone(),
        );
        registry.register(
            "client_cache",
            "Look-ups of an OAuth client's registration: hit, miss (read from PostgreSQL), eviction",
            m.client_cache.clone(),
        );
        registry.register(
            "oauth_token_requests",
            "Token-endpoint requests by grant type and outcome",
            m.token_requests.clone(),
        );
        registry.register(
            "oauth_client_auth_failures",
            "Failed client authentications by the method tried",
            m.client_auth_failures.clone(),
        );
        registry.register("jwks_responses", "JWKS responses: served or not_modified", m.jwks.clone());
        registry.register(
            "password_checks",
            "Checks of new passwords by source (blocklist, range_api) and outcome (accepted, refused, error); process-wide",
            password_checks(),
        );
        registry.register_with_unit(
            "password_range_api_duration",
            "Time of one request to the k-anonymity range API (PWNED_PASSWORDS_URL)",
            Unit::Seconds,
            m.range_api_duration.clone(),
        );
        registry.register("db_pool_max_connections", "Configured PostgreSQL pool size", m.db_pool_max.clone());
        registry.register("db_pool_connections", "PostgreSQL connections open in the pool", m.db_pool_size.clone());
        registry.register(
            "db_pool_idle_connections",
            "PostgreSQL connections idle in the pool",
            m.db_pool_available.clone(),
        );
        registry.register("db_pool_waiting", "Requests waiting for a PostgreSQL connection", m.db_pool_waiting.clone());
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stdout fell 16 MiB behind",
            crate::telemetry::dropped_lines(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Renders the registry in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The password checks of this process, by source and outcome. The list is consulted from
/// `Password::new` (the bundled list, `crate::passwords::blocklist`), which has no instance's metrics at hand, so the counters are
/// process-wide (one server per process in production) and every instance's registry shows
/// them, as it shows the log writer's dropped lines. The range API's checks are counted here
/// too, so that one metric holds both sources.
pub fn password_checks() -> Family<PasswordCheckLabels, Counter> {
    static CHECKS: LazyLock<Family<PasswordCheckLabels, Counter>> = LazyLock::new(|| {
        let family = Family::default();
        for source in [CheckSource::blocklist, CheckSource::range_api] {
            for outcome in [CheckOutcome::accepted, CheckOutcome::refused, CheckOutcome::error] {
                let _ = family.get_or_create(&PasswordCheckLabels { source, outcome });
            }
        }
        family
    });
    CHECKS.clone()
}
