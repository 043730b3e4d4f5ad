//! Configuration: one table of settings, layered defaults < `config/*.toml` < environment.
//!
//! Every setting has one name. In TOML files it is written in lower case
//! (`access_token_ttl = "15m"`), in the environment in upper case (`ACCESS_TOKEN_TTL=15m`).
//! Files in the config directory are read in lexical order, later ones overriding earlier ones,
//! so `config/default.toml` (committed, development values) can be overridden by a
//! `config/local.toml` (ignored by git) and both by the environment.
//!
//! Settings without a default (`DATABASE_URL`, `REDIS_URL`, `JWT_KEYS_DIR`, `JWT_ISSUER`,
//! `JWT_AUDIENCE`) must come from a file or the environment; startup names any that is missing.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

/// `(name, default, meaning)` of every setting. The single source for parsing and for the
/// configuration reference in docs/OPERATIONS.md.
/// The longest a rotated-out client secret may keep working (`CLIENT_SECRET_OVERLAP`, and the
/// `overlap_seconds` of a rotation).
pub const MAX_SECRET_OVERLAP: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

pub const SETTINGS: &[(&str, Option<&str>, &str)] = &[
    ("BIND_ADDR", Some("127.0.0.1:8080"), "Address the HTTP API listens on."),
    ("METRICS_BIND_ADDR", None, "Optional separate address for /metrics (otherwise served on BIND_ADDR)."),
    ("DATABASE_URL", None, "PostgreSQL URL, e.g. postgres://user@host:5432/db. Secret: never logged."),
    ("DATABASE_POOL_SIZE", Some("16"), "Connections in the PostgreSQL pool."),
    ("USER_STORE_WORKERS", Some("16"), "UserStore worker actors."),
    (
        "REDIS_URL",
        None,
        "Redis URL, e.g. redis://127.0.0.1:6379/0; with Sentinel, only the master's credentials and database (optional). Secret: never logged.",
    ),
    (
        "REDIS_SENTINELS",
        None,
        "Redis Sentinel addresses, host:port or redis:// URLs, comma-separated: the master is the one they name.",
    ),
    ("REDIS_SENTINEL_MASTER", None, "The master name the sentinels monitor (with REDIS_SENTINELS)."),
    (
        "REDIS_WAIT_REPLICAS",
        Some("1"),
        "With Sentinel: replicas that must hold a revocation before it is acknowledged (WAIT); 0 for none.",
    ),
    ("REDIS_CLUSTER_NODES", None, "Redis Cluster nodes, host:port or redis:// URLs, comma-separated (some suffice)."),
    (
        "REDIS_KEY_PREFIX",
        Some("auth:"),
        "Prefix of every Redis key this service writes; no braces (they would move the keys' hash slots).",
    ),
    ("JWT_KEYS_DIR", None, "Directory holding the signing keys and keys.json."),
    ("JWT_ACTIVE_KID", None, "Overrides which published key signs (normally keys.json decides)."),
    (
        "JWT_KEYS_ALLOW_INSECURE_PERMISSIONS",
        Some("false"),
        "true loads a key directory others can write, or keys they can read, with a warning instead of refusing it.",
    ),
    (
        "KEYS_POLL_INTERVAL",
        Some("10s"),
        "How often every instance checks keys.json for changes (SIGHUP reloads at once).",
    ),
    ("JWT_ISSUER", None, "The iss claim of issued tokens and the issuer in discovery."),
    ("JWT_AUDIENCE", None, "The aud claim of issued tokens; verification requires it."),
    ("PUBLIC_URL", None, "External base URL used in discovery documents (defaults to JWT_ISSUER)."),
    ("ACCESS_TOKEN_TTL", Some("15m"), "Lifetime of access tokens."),
    ("REFRESH_TOKEN_TTL", Some("30d"), "Lifetime of refresh tokens (and of a session without use)."),
    ("REFRESH_REUSE_GRACE", Some("10s"), "Window in which a rotated refresh token may be replayed (0s disables)."),
    (
        "REFRESH_GRACE_RETRIES",
        Some("3"),
        "Replays of one rotated refresh token served within the grace window; the next is reuse.",
    ),
    (
        "SESSION_MAX_LIFETIME",
        Some("90d"),
        "Absolute lifetime of a session from its login; rotation never extends it past this.",
    ),
    (
        "JWKS_MAX_AGE",
        Some("5m"),
        "Cache-Control max-age of the JWKS; a key must be published this long before it signs.",
    ),
    (
        "AUTHZ_CACHE_TTL",
        Some("60s"),
        "Longest an instance trusts a cached role look-up; API changes end it at once (0s disables).",
    ),
    (
        "AUTHZ_CACHE_SIZE",
        Some("16384"),
        "Users whose current standing each instance caches (least useful evicted first).",
    ),
    (
        "TOKEN_CACHE_SIZE",
        Some("16384"),
        "Access tokens each instance remembers as verified, so a reused token skips its signature check.",
    ),
    ("CLOCK_SKEW", Some("30s"), "Leeway on exp/nbf/iat, and extra time retired keys stay published."),
    ("LOG_FORMAT", Some("text"), "text or json."),
    ("LOG_LEVEL", Some("info"), "tracing filter, e.g. info or auth_service=debug,info."),
    (
        "COOKIE_SECURE",
        Some("true"),
        "Mark the refresh cookie Secure and name it __Host-refresh_token (false only for plain-HTTP development).",
    ),
    ("ALLOWED_ORIGINS", Some(""), "Comma-separated origins allowed on browser logins and cookie-authenticated POSTs."),
    ("TRUST_PROXY_HEADERS", Some("false"), "Honour X-Forwarded-For from TRUSTED_PROXY_IPS."),
    ("TRUSTED_PROXY_IPS", Some(""), "Comma-separated CIDRs of trusted reverse proxies."),
    ("ARGON2_MEMORY_KIB", Some("19456"), "Argon2id memory cost (OWASP minimum 19456)."),
    ("ARGON2_ITERATIONS", Some("2"), "Argon2id time cost."),
    ("ARGON2_PARALLELISM", Some("1"), "Argon2id lanes."),
    ("HASH_CONCURRENCY", Some("0"), "Concurrent argon2 jobs; 0 means one per CPU core."),
    ("HASH_QUEUE_TIMEOUT", Some("2s"), "How long a login/signup waits for a hashing slot before 503."),
    ("PASSWORD_MIN_LENGTH", Some("8"), "Shortest accepted password."),
    ("PASSWORD_MAX_LENGTH", Some("128"), "Longest accepted password."),
    (
        "PASSWORD_BLOCKLIST",
        Some("true"),
        "Refuse passwords on the bundled list of common and breached passwords (false only for load tests).",
    ),
    (
        "PWNED_PASSWORDS_URL",
        None,
        "Base URL of a k-anonymity range API (e.g. https://api.pwnedpasswords.com/range/); unset: only the bundled list.",
    ),
    ("PWNED_PASSWORDS_TIMEOUT", Some("2s"), "Bound on one range API request."),
    (
        "PWNED_PASSWORDS_FAIL_CLOSED",
        Some("false"),
        "true refuses a new password (503) when the range API cannot answer; false accepts it. Both are logged and counted.",
    ),
    ("RATE_LIMIT_ENABLED", Some("true"), "false disables rate limiting (load tests only; logs a warning)."),
    ("RATE_LIMIT_LOGIN", Some("10/60s"), "Login attempts per client IP."),
    ("RATE_LIMIT_LOGIN_ACCOUNT", Some("20/300s"), "Login attempts per account, from any IP."),
    ("RATE_LIMIT_SIGNUP", Some("5/60s"), "Signups per client IP."),
    ("RATE_LIMIT_REFRESH", Some("60/60s"), "Refreshes per client IP."),
    ("RATE_LIMIT_DEFAULT", Some("100/60s"), "Other API requests per client IP."),
    ("RATE_LIMIT_TOKEN", Some("600/60s"), "Requests to /oauth2/token per client IP."),
    ("RATE_LIMIT_CLIENT", Some("600/60s"), "Token requests per OAuth client, from any IP."),
    ("RATE_LIMIT_RECOVERY", Some("5/3600s"), "Password-reset and verification-mail requests per client IP."),
    (
        "RATE_LIMIT_RECOVERY_ACCOUNT",
        Some("3/3600s"),
        "Password-reset and verification mails per account, whoever asks.",
    ),
    ("LOCKOUT_THRESHOLD", Some("5"), "Consecutive failed logins that lock an account."),
    ("LOCKOUT_BASE", Some("60s"), "First lockout; each further lockout doubles it."),
    ("LOCKOUT_MAX", Some("1h"), "Longest lockout."),
    (
        "CLIENT_AUTH_THRESHOLD",
        Some("20"),
        "Failed (or concurrent undecided) authentications of one OAuth client from one address before the client is locked out for that address.",
    ),
    (
        "CLIENT_SECRET_OVERLAP",
        Some("24h"),
        "How long a rotated-out client secret keeps working beside the new one (0s: not at all).",
    ),
    (
        "CLIENT_ASSERTION_MAX_AGE",
        Some("1h"),
        "Longest lifetime (exp − now) accepted for a private_key_jwt client assertion (each is single-use within it).",
    ),
    (
        "CLIENT_JWKS_ALLOW_HTTP",
        Some("false"),
        "Accept http:// (not only https://) jwks_uri values when registering clients (development only).",
    ),
    (
        "CLIENT_JWKS_ALLOW_PRIVATE",
        Some("false"),
        "Let a client's jwks_uri point at loopback, private or link-local addresses, at registration and when fetched (development only).",
    ),
    (
        "BROWSER_SESSION_TTL",
        Some("12h"),
        "How long a sign-in on the hosted pages lasts (the browser's session cookie); the user signs in again after it.",
    ),
    (
        "SMTP_URL",
        None,
        "Where mail goes: smtp://host:port (plain, development), smtp+starttls://host:port or smtps://host:port, credentials as user:password@. Unset: mail waits in the outbox. Secret: never logged.",
    ),
    ("MAIL_FROM", Some("auth-service <no-reply@localhost>"), "The From of every mail."),
    (
        "SMTP_CA_FILE",
        None,
        "PEM file of extra roots trusted for the SMTP server's TLS certificate (e.g. a private CA), besides the Mozilla roots.",
    ),
    ("MAIL_MAX_ATTEMPTS", Some("8"), "Delivery attempts of one mail before it is dead-lettered."),
    ("MAIL_RETRY_BASE", Some("10s"), "Wait before a mail's second attempt; doubles per attempt."),
    ("MAIL_RETRY_MAX", Some("15m"), "Longest wait between two attempts of one mail."),
    ("MAIL_POLL_INTERVAL", Some("2s"), "How often the Mailer looks for due mail when nothing woke it."),
    ("MAIL_SEND_TIMEOUT", Some("30s"), "Bound on one SMTP delivery (connect, conversation, reply)."),
    (
        "REQUIRE_VERIFIED_EMAIL",
        Some("false"),
        "true refuses logins of accounts whose address is not verified (403 email_unverified).",
    ),
    ("EMAIL_VERIFICATION_TTL", Some("24h"), "Lifetime of an email-verification link."),
    ("PASSWORD_RESET_TTL", Some("30m"), "Lifetime of a password-reset link."),
    ("EMAIL_CHANGE_TTL", Some("1h"), "Lifetime of the link that confirms a new address."),
    (
        "MFA_TOKEN_TTL",
        Some("5m"),
        "Lifetime of the mfa_token a password login of an account with a second factor gets.",
    ),
    (
        "MFA_MAX_ATTEMPTS",
        Some("5"),
        "Factor checks one mfa_token allows (each also counts against the account lockout).",
    ),
    (
        "MFA_ENCRYPTION_KEYS",
        None,
        "Keys sealing TOTP secrets at rest: comma-separated kid:base64url(32 bytes); the first seals, all open. Secret.",
    ),
    ("MAX_BODY_BYTES", Some("65536"), "Largest accepted request body."),
    ("HEADER_READ_TIMEOUT", Some("10s"), "Time a client has to send its request headers."),
    ("REQUEST_TIMEOUT", Some("30s"), "Time a client has to send its request body (408 after it)."),
    ("MAX_CONNECTIONS", Some("20000"), "Open connections accepted at once."),
    (
        "SHUTDOWN_DELAY",
        Some("0s"),
        "After SIGTERM, how long readyz answers 503 while every other route still serves, before the drain.",
    ),
    ("SHUTDOWN_GRACE", Some("10s"), "How long shutdown waits for in-flight requests."),
    ("ACTOR_CALL_TIMEOUT", Some("5s"), "Bound on every actor call."),
    ("ACTOR_MAILBOX_CAPACITY", Some("1024"), "Calls that may wait on one actor before new ones get 503."),
    ("DEPENDENCY_TIMEOUT", Some("2s"), "Bound on connecting to PostgreSQL/Redis and on each operation."),
    ("PROBE_TIMEOUT", Some("1s"), "Bound on each readiness probe."),
    ("RESTART_BACKOFF_INITIAL", Some("100ms"), "Backoff before restarting a failed actor; doubles per failure."),
    ("RESTART_BACKOFF_MAX", Some("5s"), "Longest restart backoff."),
    ("RESTART_MAX", Some("5"), "Failures of one actor tolerated within RESTART_WINDOW before escalation."),
    ("RESTART_WINDOW", Some("60s"), "Window of the restart-intensity limit."),
];

/// The settings of the second step.
#[derive(Debug, Clone)]
pub struct MfaConfig {
    /// How long an `mfa_token` lives (`MFA_TOKEN_TTL`).
    pub token_ttl: Duration,
    /// How many factor checks one `mfa_token` allows (`MFA_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// `MFA_ENCRYPTION_KEYS` as given (parsed by the TOTP module); `None` when unset.
    pub encryption_keys: Option<Secret>,
}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `N/window`: at most N events per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind_addr: SocketAddr,
    pub metrics_bind_addr: Option<SocketAddr>,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub cookie_secure: bool,
    pub allowed_origins: Vec<String>,
    pub trust_proxy_headers: bool,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub keys_dir: PathBuf,
    pub active_kid: Option<String>,
    /// `JWT_KEYS_ALLOW_INSECURE_PERMISSIONS`: refuse a key directory open to others, or warn.
    pub keys_permissions: auth_actors::keys::PermissionPolicy,
    pub keys_poll_interval: Duration,
    pub issuer: String,
    pub audience: String,
    pub public_url: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub reuse_grace: Duration,
    /// Replays of one rotated refresh token served within the grace window.
    pub grace_retries: u32,
    /// No session is refreshed past this age, however often it rotates.
    pub session_max_lifetime: Duration,
    pub jwks_max_age: Duration,
    pub clock_skew: Duration,
    /// How long a cached look-up of a caller's roles may be used (while the epoch holds).
    pub authz_cache_ttl: Duration,
    /// Users whose standing each instance caches.
    pub authz_cache_size: usize,
    /// Tokens each key snapshot remembers as verified.
    pub token_cache_size: usize,
}

#[derive(Debug, Clone)]
pub struct PasswordConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Concurrent hashing jobs (already resolved from 0 = cores).
    pub concurrency: usize,
    pub queue_timeout: Duration,
    pub min_length: usize,
    pub max_length: usize,
    /// Whether the bundled list of common and breached passwords is consulted.
    pub blocklist: bool,
    /// The k-anonymity range API, when one is configured.
    pub breach_api: Option<BreachApiConfig>,
}

/// A k-anonymity range API (`PWNED_PASSWORDS_URL`): `GET {url}{first five hex digits of the
/// SHA-1}` answers the suffixes it knows.
#[derive(Debug, Clone)]
pub struct BreachApiConfig {
    pub url: String,
    pub timeout: Duration,
    /// Whether a new password is refused (true) or accepted (false) when the API cannot answer.
    pub fail_closed: bool,
}

/// Mail delivery: where the Mailer sends and how it retries.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `SMTP_URL` (may carry credentials); `None` leaves mail in the outbox.
    pub smtp_url: Option<Secret>,
    /// `SMTP_URL`, parsed (its `Debug` leaves the credentials out).
    pub smtp: Option<auth_actors::mailer::SmtpTarget>,
    pub from: String,
    /// `SMTP_CA_FILE`'s certificates (PEM), trusted besides the Mozilla roots.
    pub ca_pem: Option<Vec<u8>>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub poll_interval: Duration,
    pub send_timeout: Duration,
}

/// Verified email, password reset and email change.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub require_verified_email: bool,
    pub verification_ttl: Duration,
    pub reset_ttl: Duration,
    pub email_change_ttl: Duration,
    /// Reset and verification-mail requests per client IP.
    pub recovery: RateLimit,
    /// Reset and verification mails per account.
    pub recovery_account: RateLimit,
}

#[derive(Debug, Clone)]
pub struct LimitConfig {
    pub enabled: bool,
    pub login: RateLimit,
    pub login_account: RateLimit,
    pub signup: RateLimit,
    pub refresh: RateLimit,
    pub default: RateLimit,
    pub lockout_threshold: u32,
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    /// Per-IP limit of the OAuth token endpoint.
    pub token: RateLimit,
    /// Per-client limit of the OAuth token endpoint.
    pub client: RateLimit,
    /// Failed or undecided authentications of one client before its lockout.
    pub client_auth_threshold: u32,
}

/// The OAuth 2.1 authorization server's settings.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// How long a rotated-out client secret keeps working.
    pub secret_overlap: Duration,
    /// Longest accepted lifetime of a client assertion (RFC 7523).
    pub assertion_max_age: Duration,
    /// Whether a client's `jwks_uri` may be plain HTTP.
    pub jwks_allow_http: bool,
    /// Whether a client's `jwks_uri` may point at a loopback, private or link-local address
    /// (never in production: an unauthenticated assertion makes the service fetch it).
    pub jwks_allow_private: bool,
    /// How long a browser session (the hosted sign-in's cookie) lasts.
    pub browser_session_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database_url: Secret,
    pub database_pool_size: usize,
    pub user_store_workers: usize,
    /// Where Redis is (a URL, sentinels, or cluster nodes; may carry passwords, never logged).
    pub redis: auth_actors::redis_conn::RedisTarget,
    /// Every Redis key, under `REDIS_KEY_PREFIX`.
    pub redis_keys: auth_actors::keyspace::Keyspace,
    pub tokens: TokenConfig,
    pub passwords: PasswordConfig,
    pub limits: LimitConfig,
    pub oauth: OAuthConfig,
    pub mail: MailConfig,
    pub accounts: AccountConfig,
    pub mfa: MfaConfig,
    pub log_format: LogFormat,
    pub log_level: String,
    pub call_timeout: Duration,
    pub mailbox_capacity: usize,
    pub dependency_timeout: Duration,
    pub probe_timeout: Duration,
    pub restart: auth_actors::RestartPolicy,
}

/// A configuration problem, named so that the operator can fix it from the message alone.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} is unreadable: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("missing setting {0} (set it in the environment or a config/*.toml file)")]
    Missing(&'static str),
    #[error("invalid {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("unknown setting {key:?} in {path}")]
    Unknown { key: String, path: PathBuf },
}

/// The raw layered values, by upper-case setting name.
#[derive(Debug, Clone, Default)]
pub struct Layers(BTreeMap<&'static str, String>);

impl Layers {
    /// Defaults, then every `*.toml` of `dir` (lexical order), then the environment.
    pub fn load(dir: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Layers, ConfigError> {
        let mut layers = Layers::defaults();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        for path in files {
            layers.merge_file(&path)?;
        }
        layers.merge_env(env);
        Ok(layers)
    }

    pub fn defaults() -> Layers {
        Layers(SETTINGS.iter().filter_map(|(k, d, _)| d.map(|d| (*k, d.to_string()))).collect())
    }

    fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.to_string() })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File { path: path.to_path_buf(), reason: e.to_string() })?;
        for (key, value) in table {
            let name = setting_name(&key.to_ascii_uppercase())
                .ok_or_else(|| ConfigError::Unknown { key: key.clone(), path: path.to_path_buf() })?;
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            self.0.insert(name, value);
        }
        Ok(())
    }

    fn merge_env(&mut self, env: impl IntoIterator<Item = (String, String)>) {
        for (key, value) in env {
            if let Some(name) = setting_name(&key) {
                self.0.insert(name, value);
            }
        }
    }

    /// Sets one value (tests and tools).
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        if let Some(name) = setting_name(name) {
            self.0.insert(name, value.into());
        }
        self
    }

    /// A duration setting (its default when unset), for commands that need only a few.
    pub fn duration_value(&self, name: &str) -> Result<Duration, ConfigError> {
        let name = setting_name(name).ok_or(ConfigError::Missing("unknown setting"))?;
        self.duration(name)
    }

    /// `JWT_KEYS_ALLOW_INSECURE_PERMISSIONS` as the rule the key directory is held to; the
    /// server and the `keys` commands read it alike.
    pub fn keys_permissions(&self) -> Result<auth_actors::keys::PermissionPolicy, ConfigError> {
        use auth_actors::keys::PermissionPolicy::{Refuse, Warn};
        Ok(if self.bool("JWT_KEYS_ALLOW_INSECURE_PERMISSIONS")? { Warn } else { Refuse })
    }

    /// One raw value, for commands that need a single setting.
    pub fn value(&self, name: &str) -> Option<&str> {
        setting_name(name).and_then(|n| self.get(n))
    }

    fn get(&self, name: &'static str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `MFA_ENCRYPTION_KEYS`, checked now so that a malformed ring stops startup: `None` when
    /// unset or empty.
    fn mfa_encryption_keys(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(raw) = self.get("MFA_ENCRYPTION_KEYS").map(str::trim).filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        crate::sealing::KeyRing::parse(raw)
            .map_err(|e| ConfigError::Invalid { name: "MFA_ENCRYPTION_KEYS", reason: e.to_string() })?;
        Ok(Some(Secret::new(raw)))
    }

    fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.required(name)?;
        raw.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: format!("{raw:?}: {e}") })
    }

    fn duration(&self, name: &'static str) -> Result<Duration, ConfigError> {
        let raw = self.required(name)?;
        parse_duration(raw).map_err(|reason| ConfigError::Invalid { name, reason })
    }

    fn bool(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).unwrap_or("false").trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(ConfigError::Invalid { name, reason: format!("{other:?} is not a boolean") }),
        }
    }

    fn rate(&self, name: &'static str) -> Result<RateLimit, ConfigError> {
        let raw = self.required(name)?;
        parse_rate(raw).map_err(|reason| ConfigError::Invalid { name, reason })
    }

    fn list(&self, name: &'static str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The OAuth slice alone (the `clients` commands).
    pub fn oauth(&self) -> Result<OAuthConfig, ConfigError> {
        let secret_overlap = self.duration("CLIENT_SECRET_OVERLAP")?;
        if secret_overlap > MAX_SECRET_OVERLAP {
            let reason = "must be at most 30 days".to_string();
            return Err(ConfigError::Invalid { name: "CLIENT_SECRET_OVERLAP", reason });
        }
        Ok(OAuthConfig {
            secret_overlap,
            assertion_max_age: self.duration("CLIENT_ASSERTION_MAX_AGE")?,
            jwks_allow_http: self.bool("CLIENT_JWKS_ALLOW_HTTP")?,
            jwks_allow_private: self.bool("CLIENT_JWKS_ALLOW_PRIVATE")?,
            browser_session_ttl: self.duration("BROWSER_SESSION_TTL")?,
        })
    }

    /// The Mailer's settings. The SMTP URL's scheme is checked here; the Mailer parses the rest.
    pub fn mail(&self) -> Result<MailConfig, ConfigError> {
        let smtp_url = match self.get("SMTP_URL").map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
                if !matches!(scheme.as_deref(), Some("smtp" | "smtp+starttls" | "smtps")) {
                    let reason = "use smtp://, smtp+starttls:// or smtps://".to_string();
                    return Err(ConfigError::Invalid { name: "SMTP_URL", reason });
                }
                Some(Secret::new(url))
            }
        };
        let smtp = match &smtp_url {
            None => None,
            Some(url) => Some(
                auth_actors::mailer::SmtpTarget::parse(url.expose())
                    .map_err(|reason| ConfigError::Invalid { name: "SMTP_URL", reason })?,
            ),
        };
        let from = self.required("MAIL_FROM")?.to_string();
        auth_actors::mailer::check_from(&from).map_err(|reason| ConfigError::Invalid { name: "MAIL_FROM", reason })?;
        let ca_pem = match self.get("SMTP_CA_FILE").map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(path) => {
                let invalid = |reason: String| ConfigError::Invalid { name: "SMTP_CA_FILE", reason };
                let pem = std::fs::read(path).map_err(|e| invalid(format!("{path}: {e}")))?;
                auth_actors::mailer::check_roots(&pem).map_err(|e| invalid(format!("{path}: {e}")))?;
                Some(pem)
            }
        };
        let max_attempts: u32 = self.parse("MAIL_MAX_ATTEMPTS")?;
        if max_attempts == 0 {
            return Err(ConfigError::Invalid { name: "MAIL_MAX_ATTEMPTS", reason: "must be at least 1".into() });
        }
        Ok(MailConfig {
            smtp_url,
            smtp,
            from,
            ca_pem,
            max_attempts,
            retry_base: self.duration("MAIL_RETRY_BASE")?,
            retry_max: self.duration("MAIL_RETRY_MAX")?,
            poll_interval: self.duration("MAIL_POLL_INTERVAL")?,
            send_timeout: self.duration("MAIL_SEND_TIMEOUT")?,
        })
    }

    /// Only the password settings (for commands that hash without serving).
    pub fn passwords(&self) -> Result<PasswordConfig, ConfigError> {
        let memory_kib: u32 = self.parse("ARGON2_MEMORY_KIB")?;
        let iterations: u32 = self.parse("ARGON2_ITERATIONS")?;
        let parallelism: u32 = self.parse("ARGON2_PARALLELISM")?;
        argon2::Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| ConfigError::Invalid { name: "ARGON2_MEMORY_KIB", reason: e.to_string() })?;
        let min_length: usize = self.parse("PASSWORD_MIN_LENGTH")?;
        let max_length: usize = self.parse("PASSWORD_MAX_LENGTH")?;
        if min_length == 0 || max_length < min_length {
            return Err(ConfigError::Invalid {
                name: "PASSWORD_MAX_LENGTH",
                reason: format!("must be at least PASSWORD_MIN_LENGTH ({min_length}), which must be positive"),
            });
        }
        let concurrency: usize = self.parse("HASH_CONCURRENCY")?;
        let concurrency =
            if concurrency == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { concurrency };
        Ok(PasswordConfig {
            memory_kib,
            iterations,
            parallelism,
            concurrency,
            queue_timeout: self.duration("HASH_QUEUE_TIMEOUT")?,
            min_length,
            max_length,
            blocklist: self.bool("PASSWORD_BLOCKLIST")?,
            breach_api: match self.get("PWNED_PASSWORDS_URL").filter(|u| !u.trim().is_empty()) {
                None => None,
                Some(url) => {
                    let parsed = url::Url::parse(url.trim())
                        .map_err(|e| ConfigError::Invalid { name: "PWNED_PASSWORDS_URL", reason: e.to_string() })?;
                    if !matches!(parsed.scheme(), "http" | "https") {
                        let reason = "must be an http:// or https:// URL".to_string();
                        return Err(ConfigError::Invalid { name: "PWNED_PASSWORDS_URL", reason });
                    }
                    Some(BreachApiConfig {
                        url: url.trim().to_string(),
                        timeout: self.duration("PWNED_PASSWORDS_TIMEOUT")?,
                        fail_closed: self.bool("PWNED_PASSWORDS_FAIL_CLOSED")?,
                    })
                }
            },
        })
    }

    /// Builds the typed configuration, naming the first setting that is missing or invalid.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let trusted_proxies = self
            .list("TRUSTED_PROXY_IPS")
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|e| ConfigError::Invalid { name: "TRUSTED_PROXY_IPS", reason: format!("{s:?}: {e}") })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let log_format = match self.required("LOG_FORMAT")?.to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    reason: format!("{other:?} (use text or json)"),
                });
            }
        };
        let database_url = self.required("DATABASE_URL")?.to_string();
        auth_actors::db::parse_url(&database_url)
            .map_err(|e| ConfigError::Invalid { name: "DATABASE_URL", reason: e.to_string() })?;
        let redis = self.redis_target()?;
        let issuer = self.required("JWT_ISSUER")?.to_string();
        let passwords = self.passwords()?;
        Ok(Config {
            http: HttpConfig {
                bind_addr: self.parse("BIND_ADDR")?,
                metrics_bind_addr: match self.get("METRICS_BIND_ADDR") {
                    Some(_) => Some(self.parse("METRICS_BIND_ADDR")?),
                    None => None,
                },
                max_body_bytes: self.parse("MAX_BODY_BYTES")?,
                header_read_timeout: self.duration("HEADER_READ_TIMEOUT")?,
                request_timeout: self.duration("REQUEST_TIMEOUT")?,
                max_connections: self.parse("MAX_CONNECTIONS")?,
                shutdown_delay: self.duration("SHUTDOWN_DELAY")?,
                shutdown_grace: self.duration("SHUTDOWN_GRACE")?,
                cookie_secure: self.bool("COOKIE_SECURE")?,
                allowed_origins: self.list("ALLOWED_ORIGINS"),
                trust_proxy_headers: self.bool("TRUST_PROXY_HEADERS")?,
                trusted_proxies,
            },
            database_url: Secret::new(database_url),
            database_pool_size: self.parse("DATABASE_POOL_SIZE")?,
            user_store_workers: self.parse("USER_STORE_WORKERS")?,
            redis,
            redis_keys: auth_actors::keyspace::Keyspace::new(self.get("REDIS_KEY_PREFIX").unwrap_or_default())
                .map_err(|reason| ConfigError::Invalid { name: "REDIS_KEY_PREFIX", reason })?,
            tokens: TokenConfig {
                keys_dir: PathBuf::from(self.required("JWT_KEYS_DIR")?),
                active_kid: self.get("JWT_ACTIVE_KID").map(str::to_string),
                keys_permissions: self.keys_permissions()?,
                keys_poll_interval: self.duration("KEYS_POLL_INTERVAL")?,
                public_url: self.get("PUBLIC_URL").unwrap_or(&issuer).trim_end_matches('/').to_string(),
                issuer,
                audience: self.required("JWT_AUDIENCE")?.to_string(),
                access_ttl: self.duration("ACCESS_TOKEN_TTL")?,
                refresh_ttl: self.duration("REFRESH_TOKEN_TTL")?,
                reuse_grace: self.duration("REFRESH_REUSE_GRACE")?,
                grace_retries: self.parse("REFRESH_GRACE_RETRIES")?,
                session_max_lifetime: self.duration("SESSION_MAX_LIFETIME")?,
                jwks_max_age: self.duration("JWKS_MAX_AGE")?,
                clock_skew: self.duration("CLOCK_SKEW")?,
                authz_cache_ttl: self.duration("AUTHZ_CACHE_TTL")?,
                authz_cache_size: self.parse("AUTHZ_CACHE_SIZE")?,
                token_cache_size: self.parse("TOKEN_CACHE_SIZE")?,
            },
            passwords,
            limits: LimitConfig {
                enabled: self.bool("RATE_LIMIT_ENABLED")?,
                login: self.rate("RATE_LIMIT_LOGIN")?,
                login_account: self.rate("RATE_LIMIT_LOGIN_ACCOUNT")?,
                signup: self.rate("RATE_LIMIT_SIGNUP")?,
                refresh: self.rate("RATE_LIMIT_REFRESH")?,
                default: self.rate("RATE_LIMIT_DEFAULT")?,
                lockout_threshold: self.parse("LOCKOUT_THRESHOLD")?,
                lockout_base: self.duration("LOCKOUT_BASE")?,
                lockout_max: self.duration("LOCKOUT_MAX")?,
                token: self.rate("RATE_LIMIT_TOKEN")?,
                client: self.rate("RATE_LIMIT_CLIENT")?,
                client_auth_threshold: self.parse("CLIENT_AUTH_THRESHOLD")?,
            },
            oauth: self.oauth()?,
            mail: self.mail()?,
            accounts: AccountConfig {
                require_verified_email: self.bool("REQUIRE_VERIFIED_EMAIL")?,
                verification_ttl: self.duration("EMAIL_VERIFICATION_TTL")?,
                reset_ttl: self.duration("PASSWORD_RESET_TTL")?,
                email_change_ttl: self.duration("EMAIL_CHANGE_TTL")?,
                recovery: self.rate("RATE_LIMIT_RECOVERY")?,
                recovery_account: self.rate("RATE_LIMIT_RECOVERY_ACCOUNT")?,
            },
            mfa: MfaConfig {
                token_ttl: self.duration("MFA_TOKEN_TTL")?,
                max_attempts: self.parse("MFA_MAX_ATTEMPTS")?,
                encryption_keys: self.mfa_encryption_keys()?,
            },
            log_format,
            log_level: self.required("LOG_LEVEL")?.to_string(),
            call_timeout: self.duration("ACTOR_CALL_TIMEOUT")?,
            mailbox_capacity: self.parse("ACTOR_MAILBOX_CAPACITY")?,
            dependency_timeout: self.duration("DEPENDENCY_TIMEOUT")?,
            probe_timeout: self.duration("PROBE_TIMEOUT")?,
            restart: auth_actors::RestartPolicy {
                backoff_initial: self.duration("RESTART_BACKOFF_INITIAL")?,
                backoff_max: self.duration("RESTART_BACKOFF_MAX")?,
                max_restarts: self.parse("RESTART_MAX")?,
                window: self.duration("RESTART_WINDOW")?,
            },
        })
    }
}

fn setting_name(key: &str) -> Option<&'static str> {
    SETTINGS.iter().map(|(k, _, _)| *k).find(|k| *k == key)
}

impl Layers {
    /// Where Redis is: `REDIS_SENTINELS` (with `REDIS_SENTINEL_MASTER`), else
    /// `REDIS_CLUSTER_NODES`, else `REDIS_URL`.
    pub fn redis_target(&self) -> Result<auth_actors::redis_conn::RedisTarget, ConfigError> {
        use auth_actors::redis_conn::RedisTarget;
        let sentinels = self.list("REDIS_SENTINELS");
        let nodes = self.list("REDIS_CLUSTER_NODES");
        let target = if !sentinels.is_empty() {
            if !nodes.is_empty() {
                return Err(ConfigError::Invalid {
                    name: "REDIS_CLUSTER_NODES",
                    reason: "set either REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both".into(),
                });
            }
            let node_url = self.get("REDIS_URL").map(str::to_string);
            if let Some(url) = &node_url {
                redis_url_check(url)?;
            }
            let target = RedisTarget::Sentinel {
                sentinels,
                master: self.required("REDIS_SENTINEL_MASTER")?.to_string(),
                node_url,
                wait_replicas: self.parse("REDIS_WAIT_REPLICAS")?,
            };
            target.check().map_err(|reason| ConfigError::Invalid { name: "REDIS_SENTINELS", reason })?;
            target
        } else if !nodes.is_empty() {
            let target = RedisTarget::Cluster { nodes };
            target.check().map_err(|reason| ConfigError::Invalid { name: "REDIS_CLUSTER_NODES", reason })?;
            target
        } else {
            let url = self.required("REDIS_URL")?.to_string();
            redis_url_check(&url)?;
            RedisTarget::Single { url }
        };
        Ok(target)
    }
}

fn redis_url_check(url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://"))
        && auth_actors::redis::valid_url(url);
    if ok { Ok(()) } else { Err(ConfigError::Invalid { name: "REDIS_URL", reason: "not a redis:// URL".into() }) }
}

/// Parses durations such as `10s`, `15m`, `30d`, `250ms` (and `0s`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim()).map_err(|e| format!("{raw:?}: {e} (examples: 10s, 15m, 30d)"))
}

/// Parses `N/window`, e.g. `10/60s`.
pub fn parse_rate(raw: &str) -> Result<RateLimit, String> {
    let (n, w) = raw.split_once('/').ok_or_else(|| format!("{raw:?} is not N/window (e.g. 10/60s)"))?;
    let limit: u32 = n.trim().parse().map_err(|e| format!("{raw:?}: {e}"))?;
    let window = parse_duration(w)?;
    if limit == 0 || window.is_zero() {
        return Err(format!("{raw:?}: limit and window must be positive"));
    }
    Ok(RateLimit { limit, window })
}

impl Config {
    /// The actor tree's slice of the configuration.
    pub fn actor_settings(&self) -> auth_actors::Settings {
        auth_actors::Settings {
            keys_dir: self.tokens.keys_dir.clone(),
            active_kid: self.tokens.active_kid.clone(),
            keys_permissions: self.tokens.keys_permissions,
            keys_poll_interval: self.tokens.keys_poll_interval,
            token_cache_size: self.tokens.token_cache_size,
            database_url: self.database_url.expose().to_string(),
            database_pool_size: self.database_pool_size,
            user_store_workers: self.user_store_workers,
            redis: self.redis.clone(),
            keyspace: self.redis_keys.clone(),
            dependency_timeout: self.dependency_timeout,
            call_timeout: self.call_timeout,
            mailbox_capacity: self.mailbox_capacity,
            probe_timeout: self.probe_timeout,
            restart: self.restart.clone(),
            mail: auth_actors::mailer::MailerSettings {
                smtp: self.mail.smtp.clone(),
                from: self.mail.from.clone(),
                extra_roots: self.mail.ca_pem.clone(),
                max_attempts: self.mail.max_attempts,
                retry_base: self.mail.retry_base,
                retry_max: self.mail.retry_max,
                poll_interval: self.mail.poll_interval,
                send_timeout: self.mail.send_timeout,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Layers {
        let mut l = Layers::defaults();
        l.set("DATABASE_URL", "postgres://postgres@127.0.0.1/x")
            .set("REDIS_URL", "redis://127.0.0.1:6379")
            .set("JWT_KEYS_DIR", "/tmp/k")
            .set("JWT_ISSUER", "http://localhost")
            .set("JWT_AUDIENCE", "aud");
        l
    }

    #[test]
    fn environment_overrides_defaults() {
        let mut l = base();
        l.merge_env([("ACCESS_TOKEN_TTL".to_string(), "5m".to_string()), ("UNRELATED".into(), "x".into())]);
        let c = l.build().expect("valid");
        assert_eq!(c.tokens.access_ttl, Duration::from_secs(300));
    }

    #[test]
    fn missing_database_url_is_named() {
        let mut l = Layers::defaults();
        l.set("REDIS_URL", "redis://127.0.0.1");
        let err = l.build().expect_err("must fail").to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn unparsable_redis_url_is_named() {
        let mut l = base();
        l.set("REDIS_URL", "http://nope");
        assert!(l.build().expect_err("must fail").to_string().contains("REDIS_URL"));
    }

    #[test]
    fn rate_limits_parse_as_count_per_window() {
        assert_eq!(parse_rate("10/60s"), Ok(RateLimit { limit: 10, window: Duration::from_secs(60) }));
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0/1s").is_err());
    }

    #[test]
    fn every_setting_is_documented_in_the_operations_guide() {
        let guide = include_str!("../docs/OPERATIONS.md");
        let missing: Vec<&str> = SETTINGS.iter().map(|(name, _, _)| *name).filter(|n| !guide.contains(n)).collect();
        assert!(missing.is_empty(), "not in docs/OPERATIONS.md: {missing:?}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = base().build().expect("valid");
        assert!(!format!("{c:?}").contains("postgres://"));
    }
}
