//! The client gate, around each check of an OAuth client's credentials: the per-client limit,
//! a reservation per check so that parallel guesses cannot pass the threshold, and the lockout
//! of an (address, client) pair after too many failures. With it, the replay guard of client
//! assertions (`private_key_jwt`): each assertion's `jti` is accepted once.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Command, marker, millis};
use crate::keyspace::Keyspace;
use crate::redis_conn::RedisConn;

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

/// The client gate's verdict on a client about to be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientGate {
    /// A check is reserved; report its outcome with [`EndClient`].
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
        let set: Option<String> = marker(key, self.ttl).arg("NX").query_async(&mut conn).await?;
        Ok(set.is_some())
    }
}
