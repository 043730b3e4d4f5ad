//! Rate limits: one event counted against a limit per window, by GCRA on Redis's clock so that
//! every instance agrees.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Command, RedisError, RedisHandle, millis};
use crate::keyspace::{Keyspace, LimitClass, Subject};
use crate::redis_conn::RedisConn;

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

impl RedisHandle {
    /// Counts one request of `class` from `ip`.
    pub async fn hit_ip(
        &self,
        class: LimitClass,
        ip: IpAddr,
        limit: u32,
        window: Duration,
    ) -> Result<Decision, RedisError> {
        self.run(Hit { class, subject: Subject::Ip(ip), limit, window }).await
    }
}
