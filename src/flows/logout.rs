//! Logout (one session) and logout-all (every session of the user), and the Redis fences that
//! make revocation reach access tokens.

use std::time::Duration;

use auth_actors::db::sessions::{self, RevokeOutcome};
use auth_actors::redis::revocation;
use time::OffsetDateTime;
use uuid::Uuid;

use super::authenticate::{self, Principal, Subject};
use super::error::FlowError;
use crate::app::App;
use crate::secret::Secret;

/// Revokes the family of `refresh` (when given and known) and blacklists the presented access
/// token until it expires (when it is a valid token of ours). Succeeds even when there is
/// nothing to revoke: logging out twice is not an error.
pub async fn logout(app: &App, refresh: Option<&str>, bearer: Option<&str>) -> Result<(), FlowError> {
    if let Some(token) = bearer
        && let Ok(p) = authenticate::verify_claims(app, token)
    {
        blacklist(app, &p).await?;
    }
    if let Some(secret) = refresh.and_then(Secret::parse) {
        revoke_refresh(app, &secret).await?;
    }
    Ok(())
}

/// Revokes the session of a refresh-token secret, and fences off its access tokens.
pub async fn revoke_refresh(app: &App, secret: &Secret) -> Result<(), FlowError> {
    revoke_refresh_of(app, secret, None).await
}

/// [`revoke_refresh`] on behalf of `client`, which may revoke only the sessions bound to it.
pub async fn revoke_refresh_of(app: &App, secret: &Secret, client: Option<&str>) -> Result<(), FlowError> {
    let revoke = sessions::RevokeByToken { presented: secret.digest(), client: client.map(|c| Some(c.to_string())) };
    match app.services.db.run(revoke).await? {
        RevokeOutcome::Revoked { family_id, user_id } => fence_sessions(app, user_id, vec![family_id]).await,
        RevokeOutcome::Unknown => Ok(()),
        RevokeOutcome::NotYours => Err(FlowError::NotYours),
    }
}

/// Blacklists a verified access token of any kind until it can no longer be accepted.
pub async fn blacklist_subject(app: &App, subject: &Subject) -> Result<(), FlowError> {
    match subject {
        Subject::User(p) => blacklist(app, p).await,
        Subject::Client(claims) => {
            let ttl = remaining(app, claims.exp);
            let client = claims.sub.clone();
            Ok(app.services.redis.run(revocation::BlacklistClientToken { client, jti: claims.jti, ttl }).await?)
        }
    }
}

/// How long a token that expires at `exp` can still be accepted.
fn remaining(app: &App, exp: i64) -> Duration {
    let left = exp - OffsetDateTime::now_utc().unix_timestamp();
    Duration::from_secs(left.max(0) as u64) + past_acceptance(app)
}

/// The verifier accepts a token while the current whole second is at most `exp + leeway`, so
/// until one second past that instant; a marker must live at least as long.
fn past_acceptance(app: &App) -> Duration {
    app.config.tokens.clock_skew + Duration::from_secs(1)
}

/// The longest lifetime of an access token a fence may have to cover: `ACCESS_TOKEN_TTL`, or
/// the longest `access_token_ttl` a client may register, whichever is longer. A user's fence
/// covers every token of the user, whichever client it was issued to.
fn longest_access_ttl(app: &App) -> Duration {
    app.config.tokens.access_ttl.max(super::tokens::MAX_ACCESS_TOKEN_TTL)
}

/// How long a fence must stand: a token minted at this very moment lives at most
/// [`longest_access_ttl`], and is accepted a leeway past that (SPEC §7: a revocation holds
/// until the longest-lived token it covers has expired).
fn fence_ttl(app: &App) -> Duration {
    longest_access_ttl(app) + app.config.tokens.clock_skew + past_acceptance(app)
}

/// Refuses every access token issued to these sessions of `user`, for as long as any of them
/// can live.
pub async fn fence_sessions(app: &App, user: Uuid, sessions: Vec<Uuid>) -> Result<(), FlowError> {
    if sessions.is_empty() {
        return Ok(());
    }
    Ok(app.services.redis.run(revocation::RevokeSessions { user, sessions, ttl: fence_ttl(app) }).await?)
}

async fn blacklist(app: &App, p: &Principal) -> Result<(), FlowError> {
    let ttl = remaining(app, p.claims.exp);
    Ok(app.services.redis.run(revocation::Blacklist { user: p.user_id, jti: p.jti(), ttl }).await?)
}

/// Fences off every access token of `user_id` issued until now, for as long as any of them
/// can live. The marker only ever rises (an atomic max in Redis), so an instance whose clock
/// is behind cannot lower it.
pub async fn fence_access_tokens(app: &App, user_id: Uuid) -> Result<(), FlowError> {
    let at_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    Ok(app.services.redis.run(revocation::SetNotBefore { user: user_id, at_ms, ttl: fence_ttl(app) }).await?)
}

/// Revokes every session of the caller and fences off its access tokens: those issued until
/// now by the logout-all marker, and, by their session markers, any that a refresh committed
/// just before the revocation mints afterwards (whatever the instances' clocks say).
pub async fn logout_all(app: &App, principal: &Principal) -> Result<u64, FlowError> {
    fence_access_tokens(app, principal.user_id).await?;
    let sessions = app.services.db.run(sessions::RevokeAll { user_id: principal.user_id }).await?;
    let count = sessions.len() as u64;
    fence_sessions(app, principal.user_id, sessions).await?;
    Ok(count)
}
