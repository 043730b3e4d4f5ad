//! Logout (one session) and logout-all (every session of the user).

use std::time::Duration;

use time::OffsetDateTime;

use super::authenticate::{self, Principal};
use super::tokens;
use crate::app::App;
use crate::http::ApiError;

/// Revokes the family of `refresh` (when given and known) and blacklists the presented access
/// token until it expires (when it is a valid token of ours). Succeeds even when there is
/// nothing to revoke: logging out twice is not an error.
pub async fn logout(app: &App, refresh: Option<&str>, bearer: Option<&str>) -> Result<(), ApiError> {
    if let Some(token) = bearer
        && let Ok(p) = authenticate::verify_claims(app, token)
    {
        blacklist(app, &p).await?;
    }
    if let Some(secret) = refresh.and_then(tokens::decode_refresh) {
        revoke_refresh(app, &secret).await?;
    }
    Ok(())
}

/// Revokes the session of a refresh-token secret, and fences off its access tokens.
pub async fn revoke_refresh(app: &App, secret: &[u8]) -> Result<(), ApiError> {
    if let Some((family, _user)) = app.services.users.revoke_by_token(tokens::refresh_hash(secret)).await? {
        fence_sessions(app, vec![family]).await?;
    }
    Ok(())
}

/// The verifier accepts a token while the current whole second is at most `exp + leeway`, so
/// until one second past that instant; a marker must live at least as long.
fn past_acceptance(app: &App) -> Duration {
    app.config.tokens.clock_skew + Duration::from_secs(1)
}

/// Refuses every access token issued to these sessions, for as long as any of them can live:
/// one minted at this very moment lives `access_ttl`, and is accepted a leeway past that.
pub async fn fence_sessions(app: &App, sessions: Vec<uuid::Uuid>) -> Result<(), ApiError> {
    let ttl = app.config.tokens.access_ttl + app.config.tokens.clock_skew + past_acceptance(app);
    let sessions = sessions.iter().map(uuid::Uuid::to_string).collect();
    Ok(app.services.limiter.revoke_sessions(sessions, ttl).await?)
}

async fn blacklist(app: &App, p: &Principal) -> Result<(), ApiError> {
    let remaining = p.exp - OffsetDateTime::now_utc().unix_timestamp();
    let ttl = Duration::from_secs(remaining.max(0) as u64) + past_acceptance(app);
    Ok(app.services.limiter.blacklist(p.jti.clone(), ttl).await?)
}

/// Fences off every access token of `user_id` issued until now, for as long as any of them
/// can live. The marker only ever rises (an atomic max in Redis), so an instance whose clock
/// is behind cannot lower it.
pub async fn fence_access_tokens(app: &App, user_id: uuid::Uuid) -> Result<(), ApiError> {
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let ttl = app.config.tokens.access_ttl + app.config.tokens.clock_skew + past_acceptance(app);
    Ok(app.services.limiter.set_not_before(user_id.to_string(), now_ms, ttl).await?)
}

/// Revokes every session of the caller and fences off its access tokens: those issued until
/// now by the logout-all marker, and, by their session markers, any that a refresh committed
/// just before the revocation mints afterwards (whatever the instances' clocks say).
pub async fn logout_all(app: &App, principal: &Principal) -> Result<u64, ApiError> {
    fence_access_tokens(app, principal.user_id).await?;
    let sessions = app.services.users.revoke_all(principal.user_id).await?;
    let count = sessions.len() as u64;
    fence_sessions(app, sessions).await?;
    Ok(count)
}
