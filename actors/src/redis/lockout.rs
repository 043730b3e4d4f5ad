//! The login gate: each password check of an account is reserved before it runs, so parallel
//! guesses are counted before any of them finishes, and an account past the threshold is locked
//! for a time that doubles with each lockout in a day.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Command, millis};
use crate::keyspace::{Account, Keyspace};
use crate::redis_conn::RedisConn;

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

/// The account proved control of its mailbox and replaced its password (a reset): lift its
/// lockout as well as its failure count and level. The lock guarded the old password against
/// guessing; the password it guarded is gone.
pub struct ClearLockout {
    pub account: Account,
}

impl Command for ClearLockout {
    type Output = ();

    async fn run(self, mut conn: RedisConn, keys: Keyspace) -> redis::RedisResult<()> {
        let k = keys.lockout(&self.account);
        let _: i64 = redis::cmd("DEL").arg(&k.lock).arg(&k.attempts).arg(&k.level).query_async(&mut conn).await?;
        Ok(())
    }
}
