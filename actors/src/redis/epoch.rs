//! The authorization epoch: a random value, replaced whenever any user's roles or standing
//! change, under which every instance files what it caches about callers' standing (see the
//! service's `authz` module for why the order of writes and reads makes that safe).

use std::time::Duration;

use super::{Command, RedisError, RedisHandle};
use crate::keyspace::Keyspace;
use crate::redis_conn::{RedisConn, RedisTarget};

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

impl RedisHandle {
    /// Makes every instance drop its cached role look-ups.
    pub async fn bump_authz_epoch(&self) -> Result<(), RedisError> {
        self.run(BumpAuthzEpoch).await
    }
}

/// A new epoch: random, so that no two replacements agree.
pub(super) fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Replaces the authorization epoch over a connection of its own (operator commands, which run
/// without the actor tree), so that every instance drops what it cached.
pub async fn bump_authz_epoch_at(target: &RedisTarget, keys: &Keyspace, timeout: Duration) -> Result<(), RedisError> {
    let unavailable = |e: redis::RedisError| RedisError::Unavailable(e.to_string());
    let work = async {
        let conn = RedisConn::connect(target, timeout).await.map_err(unavailable)?;
        BumpAuthzEpoch.run(conn, keys.clone()).await.map_err(unavailable)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| RedisError::Unavailable("timed out".into()))?
}
