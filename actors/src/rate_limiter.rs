//! The RateLimiter/Blacklist actor: every Redis decision of the service. Rate-limit windows,
//! the login gate (lockouts), the access-token `jti` blacklist, the per-user "not before"
//! markers of logout-all, the per-session revocation markers, and the authorization epoch: a
//! random value that changes whenever any user's roles or standing change, so that every
//! instance can cache role look-ups and still drop them at once.
//!
//! Each request is one [`Command`]: a struct whose `run` is its Redis work. The actor hands
//! every command to a short task on its one multiplexed connection and returns to its mailbox,
//! so a slow Redis round trip never queues the requests behind it; the reply goes back through
//! the same generic path for every command. Every key comes from the [`Keyspace`], under the
//! configured prefix, so several deployments (or test runs) can share one Redis without
//! colliding, and the keys of one script share a hash slot.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::redis_conn::{RedisConn, RedisTarget};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use redis::Script;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::handle::{CallError, Endpoint};
use crate::keyspace::{Account, Keyspace, LimitClass, Subject};
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

/// The client gate, before a client's credentials are checked: refuse a locked client; count
/// the request against the per-client limit (GCRA, as above, when ARGV[3] > 0); refuse while
/// failures plus checks under way reach the threshold (so parallel guesses cannot exceed it);
/// otherwise reserve a check (`pend`, which expires on its own if its instance dies).
/// KEYS: lock, fail, pend, rl. ARGV: threshold, pend_ttl_ms, limit, window_ms.
/// Returns {status, retry_ms, remaining, reset_ms}: status 1 allowed, 2 locked, 3 rate limited,
/// 4 too many checks under way.
const CLIENT_BEGIN: &str = r"
local locked = redis.call('PTTL', KEYS[1])
if locked > 0 then return {2, locked, 0, 0} end
local limit = tonumber(ARGV[3])
local remaining, reset = 0, 0
if limit > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local window = tonumber(ARGV[4])
  local interval = window / limit
  local tat = tonumber(redis.call('GET', KEYS[4])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - window
  if now < allow_at then return {3, math.ceil(allow_at - now), 0, math.ceil(tat - now)} end
  redis.call('SET', KEYS[4], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
  remaining = math.floor((window - (new_tat - now)) / interval)
  reset = math.ceil(new_tat - now)
end
local f = tonumber(redis.call('GET', KEYS[2])) or 0
local p = tonumber(redis.call('GET', KEYS[3])) or 0
if f + p >= tonumber(ARGV[1]) then return {4, 1000, remaining, reset} end
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return {1, 0, remaining, reset}
";

/// The client gate, after the check: release the reservation; a success clears the failures
/// and the lockout level, a failure counts and, at the threshold, locks the client for
/// `base * 2^(level-1)` (at most `max`). KEYS: lock, fail, pend, lvl. ARGV: success (1/0),
/// threshold, base_ms, max_ms. Returns {locked_now, lock_ms}.
static CLIENT_END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if (tonumber(redis.call('GET', KEYS[3])) or 0) > 0 then redis.call('DECR', KEYS[3]) end
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[2], KEYS[4])
  return {0, 0}
end
local f = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if f >= tonumber(ARGV[2]) then
  local level = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], 86400000)
  local dur = math.floor(math.min(tonumber(ARGV[3]) * 2 ^ (level - 1), tonumber(ARGV[4])))
  redis.call('SET', KEYS[1], '1', 'PX', dur)
  redis.call('DEL', KEYS[2])
  return {1, dur}
end
return {0, 0}
",
    )
});

static CLIENT_BEGIN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLIENT_BEGIN));

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

/// An access token as far as revocation is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    /// Issued to a user: its `jti`, its session.
    User { user: Uuid, jti: Uuid, session: Uuid },
    /// Issued to an OAuth client itself (client credentials).
    Client { client: String, jti: Uuid },
}

/// The state of several tokens, read in one round trip, and the authorization epoch when asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenCheck {
    pub states: Vec<TokenState>,
    /// The current authorization epoch; `None` if it was not asked for or could not be read
    /// (the caller must then not use its cache). When Redis has none, a new one is started.
    pub authz_epoch: Option<String>,
}

/// One request to Redis: its fields are its arguments, `run` its commands. The actor runs every
/// command the same way (a task on the shared connection, the reply sent back, errors counted).
pub trait Command: Send + 'static {
    type Output: Send + 'static;

    fn run(self, conn: RedisConn, keys: Keyspace) -> impl Future<Output = redis::RedisResult<Self::Output>> + Send;
}

/// A command with its reply port, its output type erased.
pub trait RedisJob: Send {
    /// Starts the command on `conn`; the returned future sends the reply when it completes.
    fn start(
        self: Box<Self>,
        conn: RedisConn,
        keys: Keyspace,
        metrics: ActorMetrics,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct Pending<C: Command> {
    command: C,
    reply: RpcReplyPort<Result<C::Output, LimiterError>>,
}

impl<C: Command> RedisJob for Pending<C> {
    fn start(
        self: Box<Self>,
        conn: RedisConn,
        keys: Keyspace,
        metrics: ActorMetrics,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Pending { command, reply } = *self;
        Box::pin(async move {
            let _ = reply.send(command.run(conn, keys).await.map_err(|e| redis_error(&metrics, e)));
        })
    }
}

/// `PING` (readiness probe).
pub struct Ping;

impl Command for Ping {
    type Output = ();

    async fn run(self, mut conn: RedisConn, _: Keyspace) -> redis::RedisResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

/// Counts one event of `class` for `subject` against `limit` per `window`.
pub struct Hit {
    pub class: LimitClass,
    pub subject: Subject,
    pub limit: u32,
    pub window: Duration,
}

impl Command for Hit {
    type Output = Decision;

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<Decision> {
        let key = keys.rate(self.class, &self.subject);
        let limit = self.limit;
        let (allowed, remaining, retry, reset): (i64, i64, i64, i64) =
            GCRA.key(key).arg(limit.max(1)).arg(millis(self.window)).invoke_async(&mut conn).await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
            retry_after: Duration::from_millis(retry.max(0) as u64),
            reset: Duration::from_millis(reset.max(0) as u64),
        })
    }
}

/// Reserves a password check for `account`, or reports its lockout.
pub struct BeginLogin {
    pub account: Account,
    pub policy: LockoutPolicy,
}

impl Command for BeginLogin {
    type Output = LoginGate;

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<LoginGate> {
        let k = keys.lockout(&self.account);
        let policy = self.policy;
        let (allowed, retry, started): (i64, i64, i64) = BEGIN_LOGIN
            .key(&k.lock)
            .key(&k.attempts)
            .key(&k.level)
            .arg(policy.threshold)
            .arg(millis(policy.max))
            .arg(millis(policy.base))
            .arg(millis(policy.max))
            .invoke_async(&mut conn)
            .await?;
        Ok(if allowed == 1 {
            LoginGate::Allowed
        } else {
            LoginGate::Locked { retry_after: Duration::from_millis(retry.max(1) as u64), started_now: started == 1 }
        })
    }
}

/// A password check of `account` succeeded: clear its failure count and lockout level.
pub struct LoginSucceeded {
    pub account: Account,
}

impl Command for LoginSucceeded {
    type Output = ();

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<()> {
        let k = keys.lockout(&self.account);
        let _: i64 = redis::cmd("DEL").arg(&k.attempts).arg(&k.level).query_async(&mut conn).await?;
        Ok(())
    }
}

/// Blacklists the access token `jti` of `user` for `ttl` (past the token's own acceptance).
pub struct Blacklist {
    pub user: Uuid,
    pub jti: Uuid,
    pub ttl: Duration,
}

impl Command for Blacklist {
    type Output = ();

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<()> {
        let key = keys.blacklist(self.user, self.jti);
        redis::cmd("SET").arg(key).arg(1).arg("PX").arg(millis(self.ttl).max(1)).query_async::<()>(&mut conn).await?;
        conn.durable().await
    }
}

/// Refuses every access token of `user` issued up to `at_ms`, for `ttl`. The marker only
/// rises (an atomic max), so an instance whose clock is behind cannot lower it.
pub struct SetNotBefore {
    pub user: Uuid,
    pub at_ms: i64,
    pub ttl: Duration,
}

impl Command for SetNotBefore {
    type Output = ();

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<()> {
        let key = keys.not_before(self.user);
        RAISE_NOT_BEFORE.key(key).arg(self.at_ms).arg(millis(self.ttl).max(1)).invoke_async::<()>(&mut conn).await?;
        conn.durable().await
    }
}

/// Marks sessions of `user` revoked for `ttl`, so the access tokens issued to them are refused.
pub struct RevokeSessions {
    pub user: Uuid,
    pub sessions: Vec<Uuid>,
    pub ttl: Duration,
}

impl Command for RevokeSessions {
    type Output = ();

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for sid in &self.sessions {
            pipe.cmd("SET")
                .arg(keys.session_revoked(self.user, *sid))
                .arg(1)
                .arg("PX")
                .arg(millis(self.ttl).max(1))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        conn.durable().await
    }
}

/// The client gate's verdict on a client about to be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientGate {
    /// A check is reserved; report its outcome with [`ClientGateEnd`].
    Allowed,
    /// Locked after too many failures.
    Locked { retry_after: Duration },
    /// The per-client limit is used up.
    RateLimited { retry_after: Duration },
    /// As many checks are under way (or failed) as the threshold allows.
    Busy { retry_after: Duration },
}

/// What the gate said, and the authorization epoch read in the same round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGateCheck {
    pub gate: ClientGate,
    pub authz_epoch: Option<String>,
}

/// The client gate script's answer: {status, retry_ms, remaining, reset_ms}.
type GateAnswer = (i64, i64, i64, i64);

/// Reads the authorization epoch and, with `limits`, runs the client gate for `client` (the
/// per-client limit and the reservation of one credential check), in one round trip.
pub struct BeginClient {
    pub client: String,
    /// The address the authentication comes from: the lockout is per (address, client).
    pub address: String,
    /// `None`: limits are off; only the epoch is read.
    pub limits: Option<ClientLimits>,
}

/// The per-client limit and the lockout policy of the client gate.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub limit: u32,
    pub window: Duration,
    pub threshold: u32,
}

impl Command for BeginClient {
    type Output = ClientGateCheck;

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<ClientGateCheck> {
        let epoch_key = keys.authz_epoch();
        let Some(limits) = self.limits else {
            let authz_epoch: Option<String> = redis::cmd("GET").arg(&epoch_key).query_async(&mut conn).await?;
            return Ok(ClientGateCheck { gate: ClientGate::Allowed, authz_epoch });
        };
        let k = keys.client_gate(&self.client, &self.address);
        // On a cluster the epoch lives in another slot than the gate's keys: its own request.
        let cluster = conn.is_cluster();
        let build = |pipe: &mut redis::Pipeline, verb: &str, script: &str| {
            pipe.cmd(verb)
                .arg(script)
                .arg(4)
                .arg(&k.lock)
                .arg(&k.failures)
                .arg(&k.pending)
                .arg(&k.rate)
                .arg(limits.threshold.max(1))
                .arg(10_000)
                .arg(limits.limit)
                .arg(millis(limits.window));
            if !cluster {
                pipe.cmd("GET").arg(&epoch_key);
            }
        };
        let mut pipe = redis::pipe();
        build(&mut pipe, "EVALSHA", CLIENT_BEGIN_SCRIPT.get_hash());
        let ((status, retry, _, _), authz_epoch) = match gate_round_trip(&mut conn, &pipe, cluster, &epoch_key).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // First use since Redis started: send the script itself once.
                let mut pipe = redis::pipe();
                build(&mut pipe, "EVAL", CLIENT_BEGIN);
                gate_round_trip(&mut conn, &pipe, cluster, &epoch_key).await?
            }
            other => other?,
        };
        let retry_after = Duration::from_millis(retry.max(1) as u64);
        let gate = match status {
            1 => ClientGate::Allowed,
            2 => ClientGate::Locked { retry_after },
            3 => ClientGate::RateLimited { retry_after },
            _ => ClientGate::Busy { retry_after },
        };
        Ok(ClientGateCheck { gate, authz_epoch })
    }
}

/// The client gate's script and the epoch: one pipeline, or on a cluster (where the epoch is
/// in another slot) the epoch's own request after the script.
async fn gate_round_trip(
    conn: &mut RedisConn,
    pipe: &redis::Pipeline,
    cluster: bool,
    epoch_key: &str,
) -> redis::RedisResult<(GateAnswer, Option<String>)> {
    if !cluster {
        return pipe.query_async(conn).await;
    }
    let (answer,): (GateAnswer,) = pipe.query_async(conn).await?;
    let epoch = redis::cmd("GET").arg(epoch_key).query_async(conn).await?;
    Ok((answer, epoch))
}

/// Reports the outcome of a check the gate allowed; replies with the lockout it started, if
/// this failure reached the threshold.
pub struct EndClient {
    pub client: String,
    pub address: String,
    pub success: bool,
    pub threshold: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Command for EndClient {
    type Output = Option<Duration>;

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<Option<Duration>> {
        let k = keys.client_gate(&self.client, &self.address);
        let (locked_now, lock_ms): (i64, i64) = CLIENT_END
            .key(&k.lock)
            .key(&k.failures)
            .key(&k.pending)
            .key(&k.level)
            .arg(i64::from(self.success))
            .arg(self.threshold.max(1))
            .arg(millis(self.base))
            .arg(millis(self.max))
            .invoke_async(&mut conn)
            .await?;
        Ok((locked_now == 1).then(|| Duration::from_millis(lock_ms.max(0) as u64)))
    }
}

/// Records that the client assertion `jti_digest` of `client` was used, for `ttl` (its
/// remaining lifetime); replies whether it was new (false: a replay).
pub struct UseAssertion {
    pub client: String,
    pub jti_digest: String,
    pub ttl: Duration,
}

impl Command for UseAssertion {
    type Output = bool;

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<bool> {
        let key = keys.client_assertion(&self.client, &self.jti_digest);
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.ttl).max(1))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }
}

/// Blacklists the access token `jti` issued to client `client`, for `ttl`.
pub struct BlacklistClientToken {
    pub client: String,
    pub jti: Uuid,
    pub ttl: Duration,
}

impl Command for BlacklistClientToken {
    type Output = ();

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<()> {
        let key = keys.client_blacklist(&self.client, self.jti);
        redis::cmd("SET").arg(key).arg(1).arg("PX").arg(millis(self.ttl).max(1)).query_async(&mut conn).await
    }
}

/// Replaces the authorization epoch with a new random value: a user's roles or standing
/// changed, so every instance must stop trusting what it cached.
pub struct BumpAuthzEpoch;

impl Command for BumpAuthzEpoch {
    type Output = ();

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<()> {
        let key = keys.authz_epoch();
        redis::cmd("SET").arg(key).arg(new_epoch()).query_async::<()>(&mut conn).await?;
        conn.durable().await
    }
}

/// Messages the RateLimiter/Blacklist handles.
pub enum RateLimiterMsg {
    /// Run one command and reply with its result.
    Run(Box<dyn RedisJob>),
    /// Fail on purpose, to exercise supervision. Test builds only.
    #[cfg(feature = "failure-hook")]
    Fail(String),
}

/// Startup arguments, reused on every restart.
#[derive(Clone)]
pub struct RateLimiterArgs {
    pub redis: RedisConn,
    /// Where the actor publishes its connection for the token checks its handle runs.
    pub publish: Arc<watch::Sender<Option<RedisConn>>>,
    pub keys: Keyspace,
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
        _: ActorRef<Self::Msg>,
        args: RateLimiterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.publish.send_replace(Some(args.redis.clone()));
        Ok(RateLimiterState { args })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RateLimiterMsg::Run(job) => {
                let a = &state.args;
                tokio::spawn(job.start(a.redis.clone(), a.keys.clone(), a.metrics.clone()).in_current_span());
            }
            #[cfg(feature = "failure-hook")]
            RateLimiterMsg::Fail(reason) => return Err(reason.into()),
        }
        Ok(())
    }
}

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Reads the answer of a token check: one `MGET` per token (blacklist, not-before marker, and
/// the session marker for a token with a session, as `arity` says), then (when asked) one of the
/// epoch. A not-before marker that is not a number is an error (fail closed), not a missing
/// marker.
fn token_check(answers: &[Vec<Option<String>>], arity: &[usize], epoch: bool) -> Result<TokenCheck, LimiterError> {
    let tokens = arity.len();
    if answers.len() != tokens + usize::from(epoch) || answers.iter().zip(arity).any(|(a, n)| a.len() != *n) {
        return Err(LimiterError::Unavailable("unexpected answer to a token check".into()));
    }
    let mut states = Vec::with_capacity(tokens);
    for v in &answers[..tokens] {
        let not_before_ms = match &v[1] {
            Some(raw) => Some(
                raw.parse::<i64>().map_err(|_| LimiterError::Unavailable(format!("bad logout-all marker {raw:?}")))?,
            ),
            None => None,
        };
        let session_revoked = v.get(2).is_some_and(Option::is_some);
        states.push(TokenState { blacklisted: v[0].is_some(), not_before_ms, session_revoked });
    }
    let authz_epoch = if epoch { answers[tokens].first().cloned().flatten() } else { None };
    Ok(TokenCheck { states, authz_epoch })
}

/// The answers of `reads` (each one `MGET` within one hash slot): one pipelined round trip, or
/// on a cluster, where a pipeline must stay within one slot, the reads at once, one each.
async fn read_all(conn: &mut RedisConn, reads: Vec<redis::Cmd>) -> redis::RedisResult<Vec<Vec<Option<String>>>> {
    if conn.is_cluster() {
        let pending = reads.iter().map(|read| {
            let mut conn = conn.clone();
            async move { read.query_async::<Vec<Option<String>>>(&mut conn).await }
        });
        return futures_util::future::try_join_all(pending).await;
    }
    let mut pipe = redis::pipe();
    for read in reads {
        pipe.add_command(read);
    }
    pipe.query_async(conn).await
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Replaces the authorization epoch over a connection of its own (operator commands, which run
/// without the actor tree), so that every instance drops what it cached.
pub async fn bump_authz_epoch_at(target: &RedisTarget, keys: &Keyspace, timeout: Duration) -> Result<(), LimiterError> {
    let unavailable = |e: redis::RedisError| LimiterError::Unavailable(e.to_string());
    let work = async {
        let mut conn = RedisConn::connect(target, timeout).await.map_err(unavailable)?;
        redis::cmd("SET")
            .arg(keys.authz_epoch())
            .arg(new_epoch())
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
        conn.durable().await.map_err(unavailable)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| LimiterError::Unavailable("timed out".into()))?
}

/// Whether `url` parses as a Redis connection URL.
pub fn valid_url(url: &str) -> bool {
    redis::Client::open(url).is_ok()
}

fn redis_error(metrics: &ActorMetrics, e: redis::RedisError) -> LimiterError {
    metrics.redis_errors.inc();
    LimiterError::Unavailable(e.to_string())
}

/// The typed handle to the RateLimiter/Blacklist.
///
/// Token checks, the one Redis read on every authenticated request, do not travel through the
/// mailbox: the handle runs them in the caller's task on the connection the actor published,
/// under the same rules as a call (refused at once while the actor is down, bounded in number,
/// timed out, counted). That saves two task hand-offs per request. Everything that writes goes
/// through the actor, as a [`Command`].
#[derive(Clone)]
pub struct RateLimiterHandle {
    endpoint: Endpoint<RateLimiterMsg>,
    conn: watch::Receiver<Option<RedisConn>>,
    keys: Keyspace,
    metrics: ActorMetrics,
}

impl RateLimiterHandle {
    pub(crate) fn new(
        endpoint: Endpoint<RateLimiterMsg>,
        conn: watch::Receiver<Option<RedisConn>>,
        keys: Keyspace,
        metrics: ActorMetrics,
    ) -> Self {
        RateLimiterHandle { endpoint, conn, keys, metrics }
    }

    /// The address of the Redis master in use, when it is found through Sentinel.
    pub fn master_address(&self) -> Option<String> {
        self.conn.borrow().as_ref().and_then(RedisConn::master_address)
    }

    /// The keyspace every command of this handle uses.
    pub fn keyspace(&self) -> &Keyspace {
        &self.keys
    }

    /// Runs one command through the actor, within the call timeout.
    pub async fn run<C: Command>(&self, command: C) -> Result<C::Output, LimiterError> {
        self.endpoint.call(|reply| RateLimiterMsg::Run(Box::new(Pending { command, reply }))).await?
    }

    pub async fn ping(&self) -> Result<(), LimiterError> {
        self.run(Ping).await
    }

    /// Counts one request of `class` from `ip`.
    pub async fn hit_ip(
        &self,
        class: LimitClass,
        ip: IpAddr,
        limit: u32,
        window: Duration,
    ) -> Result<Decision, LimiterError> {
        self.run(Hit { class, subject: Subject::Ip(ip), limit, window }).await
    }

    /// Makes every instance drop its cached role look-ups.
    pub async fn bump_authz_epoch(&self) -> Result<(), LimiterError> {
        self.run(BumpAuthzEpoch).await
    }

    /// Reads, for each token, the blacklist entry of its `jti`, the logout-all marker of its
    /// user and the revocation marker of its session (one `MGET` per token, in its user's hash
    /// slot), and with `epoch` the authorization epoch, all in one pipelined round trip.
    pub async fn check_tokens(&self, tokens: &[TokenRef], epoch: bool) -> Result<TokenCheck, LimiterError> {
        let Some(mut conn) = self.conn.borrow().clone() else {
            return Err(CallError::Unavailable(self.endpoint.name()).into());
        };
        let mut reads = Vec::with_capacity(tokens.len() + 1);
        let mut arity = Vec::with_capacity(tokens.len());
        for t in tokens {
            let k = match t {
                TokenRef::User { user, jti, session } => self.keys.token(*user, *jti, *session),
                TokenRef::Client { client, jti } => self.keys.client_token(client, *jti),
            };
            let mut read = redis::cmd("MGET");
            read.arg(&k.blacklist).arg(&k.not_before);
            if let Some(session) = &k.session {
                read.arg(session);
            }
            reads.push(read);
            arity.push(2 + usize::from(k.session.is_some()));
        }
        let epoch_key = epoch.then(|| self.keys.authz_epoch());
        if let Some(key) = &epoch_key {
            let mut read = redis::cmd("MGET");
            read.arg(key);
            reads.push(read);
        }
        let metrics = &self.metrics;
        self.endpoint
            .run(async move {
                let answers = read_all(&mut conn, reads).await.map_err(|e| redis_error(metrics, e))?;
                let mut check = token_check(&answers, &arity, epoch)?;
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

    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.endpoint.cast(RateLimiterMsg::Fail(reason.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn token_checks_are_read_three_values_per_token_then_the_epoch() {
        let answers = vec![vec![None, v("17"), None], vec![v("x"), None, v("1")], vec![v("e1")]];
        let check = token_check(&answers, &[3, 3], true).expect("valid");
        assert_eq!(
            check.states,
            vec![
                TokenState { blacklisted: false, not_before_ms: Some(17), session_revoked: false },
                TokenState { blacklisted: true, not_before_ms: None, session_revoked: true },
            ]
        );
        assert_eq!(check.authz_epoch.as_deref(), Some("e1"));
        assert_eq!(token_check(&[vec![None, None, None]], &[3], false).expect("valid").authz_epoch, None);
        let client = token_check(&[vec![v("1"), None], vec![v("e")]], &[2], true).expect("valid");
        assert!(client.states[0].blacklisted && !client.states[0].session_revoked);
    }

    #[test]
    fn malformed_answers_fail_closed() {
        assert!(token_check(&[vec![None, v("soon"), None]], &[3], false).is_err());
        assert!(token_check(&[vec![None, None]], &[3], false).is_err());
        assert!(token_check(&[vec![None, None, None]], &[3], true).is_err());
    }
}
