//! The RateLimiter/Blacklist actor: every Redis decision of the service. Rate-limit windows,
//! the access-token `jti` blacklist, the per-user "not before" markers of logout-all, and the
//! authorization epoch: a random value that changes whenever any user's roles or standing
//! change, so that every instance can cache role look-ups and still drop them at once.
//!
//! Redis commands are pipelined over one multiplexed connection: the actor hands each request
//! to a short task on that connection and returns to its mailbox, so a slow Redis round trip
//! never queues the requests behind it. Every key carries the configured prefix, so several
//! deployments (or test runs) can share one Redis without colliding.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tracing::Instrument;

use crate::handle::{CallError, Endpoint};
use crate::metrics::ActorMetrics;

/// Failures of a Redis-backed decision.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// Redis is unreachable or answered with an error. Callers fail closed.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

/// GCRA (a sliding-window equivalent) in one atomic script, on Redis's clock so that every
/// instance agrees. Returns {allowed, remaining, retry_after_ms, reset_ms}.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, math.floor((window - (new_tat - now)) / interval), 0, math.ceil(new_tat - now)}
",
    )
});

/// Reserves one password check for an account before it runs, so that parallel guesses are
/// counted before any of them finishes: past `threshold` reservations the account is locked
/// for `base * 2^(level-1)` (at most `max`), level growing with each lockout in a day.
/// Returns {allowed, retry_after_ms, locked_now}.
static BEGIN_LOGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local locked = redis.call('PTTL', KEYS[1])
if locked > 0 then return {0, locked, 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local level = redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], 86400000)
  local dur = math.floor(math.min(tonumber(ARGV[3]) * 2 ^ (level - 1), tonumber(ARGV[4])))
  redis.call('SET', KEYS[1], '1', 'PX', dur)
  redis.call('DEL', KEYS[2])
  return {0, dur, 1}
end
return {1, 0, 0}
",
    )
});

/// Raises a user's logout-all marker to ARGV[1] (ms since the epoch) unless it is already
/// higher, and keeps it at least ARGV[2] ms: the marker never goes down, whichever instance's
/// clock set it.
static RAISE_NOT_BEFORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1]))
local at = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
if current == nil or current < at then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
elseif redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
",
    )
});

/// A rate-limit decision, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// How long until a denied request may be retried.
    pub retry_after: Duration,
    /// How long until the window is fully replenished.
    pub reset: Duration,
}

/// Whether a login attempt on an account may check a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginGate {
    Allowed,
    /// The account is locked; `started_now` is true for the attempt that tripped the lock.
    Locked {
        retry_after: Duration,
        started_now: bool,
    },
}

/// The lockout policy, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub base: Duration,
    pub max: Duration,
}

/// What Redis knows about an access token: blacklisted, and the user's logout-all marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenState {
    pub blacklisted: bool,
    /// Tokens issued up to this instant (ms since the epoch) are refused.
    pub not_before_ms: Option<i64>,
    /// The token's session (refresh-token family) has been revoked.
    pub session_revoked: bool,
}

/// The Redis keys of one access token: its `jti`, its user and its session.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    pub jti: String,
    pub user: String,
    pub session: Option<String>,
}

/// The state of several tokens, read in one round trip, and the authorization epoch when asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenCheck {
    pub states: Vec<TokenState>,
    /// The current authorization epoch; `None` if it was not asked for or could not be read
    /// (the caller must then not use its cache). When Redis has none, a new one is started.
    pub authz_epoch: Option<String>,
}

/// Messages the RateLimiter/Blacklist handles.
pub enum RateLimiterMsg {
    /// `PING` Redis (readiness probe).
    Ping(RpcReplyPort<Result<(), LimiterError>>),
    /// Count one event against `limit` per `window` for `key` (e.g. `login:ip:1.2.3.4`).
    Hit { key: String, limit: u32, window: Duration, reply: RpcReplyPort<Result<Decision, LimiterError>> },
    /// Reserve a password check for `account`, or report its lockout.
    BeginLogin { account: String, policy: LockoutPolicy, reply: RpcReplyPort<Result<LoginGate, LimiterError>> },
    /// A password check of `account` succeeded: clear its failure count and lockout level.
    LoginSucceeded { account: String, reply: RpcReplyPort<Result<(), LimiterError>> },
    /// Blacklist an access token's `jti` for `ttl` (until the token's own expiry).
    Blacklist { jti: String, ttl: Duration, reply: RpcReplyPort<Result<(), LimiterError>> },
    /// Refuse every access token of `user` issued up to `at_ms`, for `ttl` (the marker only rises).
    SetNotBefore { user: String, at_ms: i64, ttl: Duration, reply: RpcReplyPort<Result<(), LimiterError>> },
    /// Mark sessions revoked for `ttl`, so the access tokens issued to them are refused.
    RevokeSessions { sessions: Vec<String>, ttl: Duration, reply: RpcReplyPort<Result<(), LimiterError>> },
    /// Replace the authorization epoch with a new random value: a user's roles or standing
    /// changed, so every instance must stop trusting what it cached.
    BumpAuthzEpoch(RpcReplyPort<Result<(), LimiterError>>),
    /// Fail on purpose, to exercise supervision. Test builds only.
    #[cfg(feature = "failure-hook")]
    Fail(String),
}

/// Startup arguments, reused on every restart.
#[derive(Clone)]
pub struct RateLimiterArgs {
    pub redis: ConnectionManager,
    /// Where the actor publishes its connection for the token checks its handle runs.
    pub publish: Arc<watch::Sender<Option<ConnectionManager>>>,
    /// Prepended to every key this actor touches.
    pub prefix: String,
    pub metrics: ActorMetrics,
}

pub struct RateLimiterState {
    args: RateLimiterArgs,
}

pub struct RateLimiter;

impl Actor for RateLimiter {
    type Msg = RateLimiterMsg;
    type State = RateLimiterState;
    type Arguments = RateLimiterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RateLimiterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.publish.send_replace(Some(args.redis.clone()));
        Ok(RateLimiterState { args })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut conn = state.args.redis.clone();
        let metrics = state.args.metrics.clone();
        match msg {
            RateLimiterMsg::Ping(reply) => {
                tokio::spawn(
                    async move {
                        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
                        let _ = reply.send(r.map(|_| ()).map_err(|e| redis_error(&metrics, e)));
                    }
                    .in_current_span(),
                );
            }
            RateLimiterMsg::Hit { key, limit, window, reply } => {
                let key = format!("{}rl:{key}", state.args.prefix);
                tokio::spawn(
                    async move {
                        let r: redis::RedisResult<(i64, i64, i64, i64)> =
                            GCRA.key(key).arg(limit.max(1)).arg(millis(window)).invoke_async(&mut conn).await;
                        let _ = reply.send(r.map_err(|e| redis_error(&metrics, e)).map(
                            |(allowed, remaining, retry, reset)| Decision {
                                allowed: allowed == 1,
                                limit,
                                remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
                                retry_after: Duration::from_millis(retry.max(0) as u64),
                                reset: Duration::from_millis(reset.max(0) as u64),
                            },
                        ));
                    }
                    .in_current_span(),
                );
            }
            RateLimiterMsg::BeginLogin { account, policy, reply } => {
                let p = &state.args.prefix;
                let keys = [format!("{p}lock:{account}"), format!("{p}att:{account}"), format!("{p}lvl:{account}")];
                tokio::spawn(
                    async move {
                        let r: redis::RedisResult<(i64, i64, i64)> = BEGIN_LOGIN
                            .key(&keys[0])
                            .key(&keys[1])
                            .key(&keys[2])
                            .arg(policy.threshold)
                            .arg(millis(policy.max))
                            .arg(millis(policy.base))
                            .arg(millis(policy.max))
                            .invoke_async(&mut conn)
                            .await;
                        let _ = reply.send(r.map_err(|e| redis_error(&metrics, e)).map(|(allowed, retry, started)| {
                            if allowed == 1 {
                                LoginGate::Allowed
                            } else {
                                LoginGate::Locked {
                                    retry_after: Duration::from_millis(retry.max(1) as u64),
                                    started_now: started == 1,
                                }
                            }
                        }));
                    }
                    .in_current_span(),
                );
            }
            RateLimiterMsg::LoginSucceeded { account, reply } => {
                let p = state.args.prefix.clone();
                tokio::spawn(
                    async move {
                        let r: redis::RedisResult<i64> = redis::cmd("DEL")
                            .arg(format!("{p}att:{account}"))
                            .arg(format!("{p}lvl:{account}"))
                            .query_async(&mut conn)
                            .await;
                        let _ = reply.send(r.map(|_| ()).map_err(|e| redis_error(&metrics, e)));
                    }
                    .in_current_span(),
                );
            }
            RateLimiterMsg::Blacklist { jti, ttl, reply } => {
                let key = format!("{}bl:{jti}", state.args.prefix);
                tokio::spawn(
                    async move {
                        let r: redis::RedisResult<()> = redis::cmd("SET")
                            .arg(key)
                            .arg(1)
                            .arg("PX")
                            .arg(millis(ttl).max(1))
                            .query_async(&mut conn)
                            .await;
                        let _ = reply.send(r.map_err(|e| redis_error(&metrics, e)));
                    }
                    .in_current_span(),
                );
            }
            RateLimiterMsg::SetNotBefore { user, at_ms, ttl, reply } => {
                let key = format!("{}nb:{user}", state.args.prefix);
                tokio::spawn(
                    async move {
                        let r: redis::RedisResult<()> =
                            RAISE_NOT_BEFORE.key(key).arg(at_ms).arg(millis(ttl).max(1)).invoke_async(&mut conn).await;
                        let _ = reply.send(r.map_err(|e| redis_error(&metrics, e)));
                    }
                    .in_current_span(),
                );
            }
            RateLimiterMsg::RevokeSessions { sessions, ttl, reply } => {
                let p = state.args.prefix.clone();
                tokio::spawn(
                    async move {
                        let mut pipe = redis::pipe();
                        for sid in &sessions {
                            pipe.cmd("SET")
                                .arg(format!("{p}rs:{sid}"))
                                .arg(1)
                                .arg("PX")
                                .arg(millis(ttl).max(1))
                                .ignore();
                        }
                        let r: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
                        let _ = reply.send(r.map_err(|e| redis_error(&metrics, e)));
                    }
                    .in_current_span(),
                );
            }
            RateLimiterMsg::BumpAuthzEpoch(reply) => {
                let key = format!("{}{AUTHZ_EPOCH}", state.args.prefix);
                tokio::spawn(
                    async move {
                        let r: redis::RedisResult<()> =
                            redis::cmd("SET").arg(&key).arg(new_epoch()).query_async(&mut conn).await;
                        let _ = reply.send(r.map_err(|e| redis_error(&metrics, e)));
                    }
                    .in_current_span(),
                );
            }
            #[cfg(feature = "failure-hook")]
            RateLimiterMsg::Fail(reason) => return Err(reason.into()),
        }
        Ok(())
    }
}

/// The key (after the prefix) of the authorization epoch.
pub const AUTHZ_EPOCH: &str = "authz:epoch";

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Reads an MGET answer: three values per token, then the epoch if it was asked for. A
/// logout-all marker that is not a number is an error (fail closed), not a missing marker.
fn token_check(values: &[Option<String>], tokens: usize, epoch: bool) -> Result<TokenCheck, LimiterError> {
    if values.len() != tokens * 3 + usize::from(epoch) {
        return Err(LimiterError::Unavailable(format!("MGET answered {} values", values.len())));
    }
    let mut states = Vec::with_capacity(tokens);
    for v in values.chunks_exact(3).take(tokens) {
        let not_before_ms = match &v[1] {
            Some(raw) => Some(
                raw.parse::<i64>().map_err(|_| LimiterError::Unavailable(format!("bad logout-all marker {raw:?}")))?,
            ),
            None => None,
        };
        states.push(TokenState { blacklisted: v[0].is_some(), not_before_ms, session_revoked: v[2].is_some() });
    }
    let authz_epoch = if epoch { values[tokens * 3].clone() } else { None };
    Ok(TokenCheck { states, authz_epoch })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether `url` parses as a Redis connection URL.
pub fn valid_url(url: &str) -> bool {
    redis::Client::open(url).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn token_checks_are_read_three_values_per_token_then_the_epoch() {
        let check = token_check(&[None, v("17"), None, v("x"), None, v("1"), v("e1")], 2, true).expect("valid");
        assert_eq!(
            check.states,
            vec![
                TokenState { blacklisted: false, not_before_ms: Some(17), session_revoked: false },
                TokenState { blacklisted: true, not_before_ms: None, session_revoked: true },
            ]
        );
        assert_eq!(check.authz_epoch.as_deref(), Some("e1"));
        assert_eq!(token_check(&[None, None, None], 1, false).expect("valid").authz_epoch, None);
    }

    #[test]
    fn malformed_answers_fail_closed() {
        assert!(token_check(&[None, v("soon"), None], 1, false).is_err());
        assert!(token_check(&[None, None], 1, false).is_err());
    }
}

fn redis_error(metrics: &ActorMetrics, e: redis::RedisError) -> LimiterError {
    metrics.redis_errors.inc();
    LimiterError::Unavailable(e.to_string())
}

/// The typed handle to the RateLimiter/Blacklist.
///
/// Token checks, the one Redis read on every authenticated request, do not travel through the
/// mailbox: the handle runs their `MGET` in the caller's task on the connection the actor
/// published, under the same rules as a call (refused at once while the actor is down, bounded
/// in number, timed out, counted). That saves two task hand-offs per request. Everything that
/// writes goes through the actor.
#[derive(Clone)]
pub struct RateLimiterHandle {
    endpoint: Endpoint<RateLimiterMsg>,
    conn: watch::Receiver<Option<ConnectionManager>>,
    prefix: Arc<str>,
    metrics: ActorMetrics,
}

impl RateLimiterHandle {
    pub(crate) fn new(
        endpoint: Endpoint<RateLimiterMsg>,
        conn: watch::Receiver<Option<ConnectionManager>>,
        prefix: &str,
        metrics: ActorMetrics,
    ) -> Self {
        RateLimiterHandle { endpoint, conn, prefix: prefix.into(), metrics }
    }

    async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<R, LimiterError>>) -> RateLimiterMsg,
    ) -> Result<R, LimiterError> {
        self.endpoint.call(build).await?
    }

    pub async fn ping(&self) -> Result<(), LimiterError> {
        self.call(RateLimiterMsg::Ping).await
    }

    /// Counts one event for `key` against `limit` per `window`.
    pub async fn hit(&self, key: String, limit: u32, window: Duration) -> Result<Decision, LimiterError> {
        self.call(|reply| RateLimiterMsg::Hit { key, limit, window, reply }).await
    }

    pub async fn begin_login(&self, account: String, policy: LockoutPolicy) -> Result<LoginGate, LimiterError> {
        self.call(|reply| RateLimiterMsg::BeginLogin { account, policy, reply }).await
    }

    pub async fn login_succeeded(&self, account: String) -> Result<(), LimiterError> {
        self.call(|reply| RateLimiterMsg::LoginSucceeded { account, reply }).await
    }

    pub async fn blacklist(&self, jti: String, ttl: Duration) -> Result<(), LimiterError> {
        self.call(|reply| RateLimiterMsg::Blacklist { jti, ttl, reply }).await
    }

    pub async fn set_not_before(&self, user: String, at_ms: i64, ttl: Duration) -> Result<(), LimiterError> {
        self.call(|reply| RateLimiterMsg::SetNotBefore { user, at_ms, ttl, reply }).await
    }

    /// Reads, for each token, the blacklist entry of its `jti`, the logout-all marker of its
    /// user and the revocation marker of its session, and with `epoch` the authorization epoch,
    /// all in one `MGET`.
    pub async fn check_tokens(&self, tokens: Vec<TokenKeys>, epoch: bool) -> Result<TokenCheck, LimiterError> {
        let Some(mut conn) = self.conn.borrow().clone() else {
            return Err(CallError::Unavailable(self.endpoint.name()).into());
        };
        let p = &self.prefix;
        let mut keys = Vec::with_capacity(tokens.len() * 3 + 1);
        for t in &tokens {
            keys.push(format!("{p}bl:{}", t.jti));
            keys.push(format!("{p}nb:{}", t.user));
            keys.push(format!("{p}rs:{}", t.session.as_deref().unwrap_or("-")));
        }
        let epoch_key = epoch.then(|| format!("{p}{AUTHZ_EPOCH}"));
        if let Some(key) = &epoch_key {
            keys.push(key.clone());
        }
        let metrics = &self.metrics;
        self.endpoint
            .run(async move {
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys[..])
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error(metrics, e))?;
                let mut check = token_check(&values, tokens.len(), epoch)?;
                if let Some(epoch_key) = epoch_key.filter(|_| check.authz_epoch.is_none()) {
                    // No epoch yet (first use, or Redis lost its data): start one unless another
                    // instance just did, and read back whichever holds. It is read before the
                    // caller reads the database, which is all the cache needs; if this fails,
                    // the caller reads the database uncached.
                    let r: redis::RedisResult<((), Option<String>)> = redis::pipe()
                        .cmd("SET")
                        .arg(&epoch_key)
                        .arg(new_epoch())
                        .arg("NX")
                        .cmd("GET")
                        .arg(&epoch_key)
                        .query_async(&mut conn)
                        .await;
                    match r {
                        Ok((_, current)) => check.authz_epoch = current,
                        Err(e) => {
                            redis_error(metrics, e);
                        }
                    }
                }
                Ok(check)
            })
            .await?
    }

    /// Makes every instance drop its cached role look-ups.
    pub async fn bump_authz_epoch(&self) -> Result<(), LimiterError> {
        self.call(RateLimiterMsg::BumpAuthzEpoch).await
    }

    pub async fn revoke_sessions(&self, sessions: Vec<String>, ttl: Duration) -> Result<(), LimiterError> {
        if sessions.is_empty() {
            return Ok(());
        }
        self.call(|reply| RateLimiterMsg::RevokeSessions { sessions, ttl, reply }).await
    }

    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.endpoint.cast(RateLimiterMsg::Fail(reason.to_string()))
    }
}
