//! Revocation: the access-token `jti` blacklist (a user's and a client's tokens), the per-user
//! "not before" markers of logout-all, the per-session revocation markers, and the check of all
//! three (with the authorization epoch) that every authenticated request makes.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use uuid::Uuid;

use super::epoch::new_epoch;
use super::{Command, RedisError, RedisHandle, counted, marker, millis};
use crate::handle::CallError;
use crate::keyspace::Keyspace;
use crate::redis_conn::RedisConn;

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
        marker(key, self.ttl).query_async::<()>(&mut conn).await?;
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
            pipe.add_command(marker(keys.session_revoked(self.user, *sid), self.ttl)).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        conn.durable().await
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
        marker(key, self.ttl).query_async(&mut conn).await
    }
}

impl RedisHandle {
    /// Reads, for each token, the blacklist entry of its `jti`, the logout-all marker of its
    /// user and the revocation marker of its session (one `MGET` per token, in its user's hash
    /// slot), and with `epoch` the authorization epoch, all in one pipelined round trip.
    pub async fn check_tokens(&self, tokens: &[TokenRef], epoch: bool) -> Result<TokenCheck, RedisError> {
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
                let answers = read_all(&mut conn, reads).await.map_err(|e| counted(metrics, e))?;
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
                            counted(metrics, e);
                        }
                    }
                }
                Ok(check)
            })
            .await?
    }
}

/// Reads the answer of a token check: one `MGET` per token (blacklist, not-before marker, and
/// the session marker for a token with a session, as `arity` says), then (when asked) one of the
/// epoch. A not-before marker that is not a number is an error (fail closed), not a missing
/// marker.
fn token_check(answers: &[Vec<Option<String>>], arity: &[usize], epoch: bool) -> Result<TokenCheck, RedisError> {
    let tokens = arity.len();
    if answers.len() != tokens + usize::from(epoch) || answers.iter().zip(arity).any(|(a, n)| a.len() != *n) {
        return Err(RedisError::Unavailable("unexpected answer to a token check".into()));
    }
    let mut states = Vec::with_capacity(tokens);
    for v in &answers[..tokens] {
        let not_before_ms = match &v[1] {
            Some(raw) => Some(
                raw.parse::<i64>().map_err(|_| RedisError::Unavailable(format!("bad logout-all marker {raw:?}")))?,
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
