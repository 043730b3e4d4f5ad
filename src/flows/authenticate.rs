//! The one verifier every protected route (and introspection) uses.
//!
//! A Bearer token is accepted only if the KeyManager's current keys verify it (signature with
//! the algorithm bound to its `kid`, `typ: at+jwt`, `iss`, `aud`, `exp`, `nbf`), its `type`
//! claim is `access`, it names its session (`sid`), its `jti` is not blacklisted, its session
//! has not been revoked, it was issued after the user's logout-all marker, and its user exists
//! and is active *now*. The principal it yields carries the user's current roles, not the ones
//! written in the token. Redis being unreachable fails closed (503), never open.
//!
//! The revocation markers and the authorization epoch are read in one `MGET`; the user's
//! standing comes from the per-instance cache filed under that epoch (see [`crate::authz`]),
//! so a cached user costs no PostgreSQL query.

use auth_actors::keys::VerifyRules;
use auth_actors::rate_limiter::{TokenKeys, TokenState};
use uuid::Uuid;

use crate::app::App;
use crate::authz::Standing;
use crate::http::ApiError;

/// The caller behind a valid access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    /// The user's roles now (once checked; before that, the token's claim).
    pub roles: Vec<String>,
    pub jti: String,
    pub exp: i64,
    /// The session (refresh-token family) the token was issued to; required.
    pub session: Uuid,
    /// Every claim of the token, as verified.
    pub claims: std::sync::Arc<serde_json::Value>,
}

/// Why a token was refused; all of them are 401 to the client.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token has been revoked")]
    Revoked,
}

pub fn rules(app: &App) -> VerifyRules {
    let t = &app.config.tokens;
    VerifyRules { typ: "at+jwt", issuer: t.issuer.clone(), audience: t.audience.clone(), leeway: t.clock_skew }
}

/// Checks signature and claims only (no Redis): a token that passes is ours and current.
pub fn verify_claims(app: &App, token: &str) -> Result<Principal, Result<Rejection, ApiError>> {
    let claims = match app.services.keys.verify(token, &rules(app)) {
        Ok(c) => c,
        Err(auth_actors::key_manager::SignError::Call(e)) => return Err(Err(e.into())),
        Err(_) => return Err(Ok(Rejection::Invalid)),
    };
    principal_from(claims).ok_or(Ok(Rejection::Invalid))
}

fn principal_from(claims: std::sync::Arc<serde_json::Value>) -> Option<Principal> {
    if claims.get("type")?.as_str()? != "access" {
        return None;
    }
    Some(Principal {
        user_id: claims.get("sub")?.as_str()?.parse().ok()?,
        username: claims.get("username")?.as_str()?.to_string(),
        email: claims.get("email")?.as_str()?.to_string(),
        roles: claims.get("roles")?.as_array()?.iter().filter_map(|r| r.as_str().map(str::to_string)).collect(),
        jti: claims.get("jti")?.as_str()?.to_string(),
        exp: claims.get("exp")?.as_i64()?,
        // A token that names no session could not be revoked with its session: refuse it.
        session: claims.get("sid")?.as_str()?.parse().ok()?,
        claims,
    })
}

/// Milliseconds since the epoch at which a token was issued, from its v7 `jti`.
fn issued_ms(jti: &str) -> Option<i64> {
    let uuid: Uuid = jti.parse().ok()?;
    let (secs, nanos) = uuid.get_timestamp()?.to_unix();
    Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
}

/// The Redis keys of a verified token.
fn token_keys(p: &Principal) -> TokenKeys {
    TokenKeys { jti: p.jti.clone(), user: p.user_id.to_string(), session: Some(p.session.to_string()) }
}

/// Whether Redis says `principal`'s token is revoked: blacklisted, its session revoked, or
/// issued no later than its user's logout-all marker (a token minted in the marker's own
/// millisecond is refused too).
fn revoked(principal: &Principal, state: &TokenState) -> bool {
    if state.blacklisted || state.session_revoked {
        return true;
    }
    state.not_before_ms.is_some_and(|marker| issued_ms(&principal.jti).unwrap_or(i64::MIN) <= marker)
}

/// Full verification of a token: claims, revocation markers and the user's current standing.
pub async fn verify(app: &App, token: &str) -> Result<Principal, Result<Rejection, ApiError>> {
    let principal = verify_claims(app, token)?;
    match check(app, principal, None).await {
        Ok((principal, _)) => Ok(principal),
        Err(ApiError::Unauthorized(_)) => Err(Ok(Rejection::Revoked)),
        Err(other) => Err(Err(other)),
    }
}

/// The principal of a request's Bearer token, or 401 (503 when a dependency is down).
pub async fn authenticate(app: &App, bearer: Option<&str>) -> Result<Principal, ApiError> {
    let caller = claims_of(app, bearer)?;
    Ok(check(app, caller, None).await?.0)
}

fn unauthorized(e: Result<Rejection, ApiError>) -> ApiError {
    match e {
        Ok(rejection) => ApiError::Unauthorized(rejection.to_string()),
        Err(api) => api,
    }
}

/// Like [`authenticate`], then requires one of `roles` in the user's *current* roles, not the
/// token's: 403 otherwise, and 401 if the user is gone or inactive. A role removed through the
/// API stops working at once (see [`crate::authz`]).
pub async fn require_role(app: &App, bearer: Option<&str>, roles: &[&str]) -> Result<Principal, ApiError> {
    let caller = authenticate(app, bearer).await?;
    require(&caller, roles)?;
    Ok(caller)
}

fn require(caller: &Principal, roles: &[&str]) -> Result<(), ApiError> {
    if caller.roles.iter().any(|r| roles.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("requires role {}", roles.join(" or "))))
    }
}

/// [`require_role`] for the caller and full verification of a second token (introspection's
/// subject, whose principal then carries its user's current roles), with one Redis round trip
/// for both. The subject's verdict is returned, not raised. `caller` comes from [`claims_of`].
pub async fn require_role_and_verify(
    app: &App,
    caller: Principal,
    roles: &[&str],
    subject: &str,
) -> Result<(Principal, Result<Principal, Rejection>), ApiError> {
    let subject = match verify_claims(app, subject) {
        Ok(p) => Ok(p),
        Err(Ok(rejection)) => Err(rejection),
        Err(Err(api)) => return Err(api),
    };
    let (caller, subject) = check(app, caller, Some(subject)).await?;
    require(&caller, roles)?;
    Ok((caller, subject))
}

/// The caller's verified claims (no Redis yet), or 401.
pub fn claims_of(app: &App, bearer: Option<&str>) -> Result<Principal, ApiError> {
    let token = bearer.ok_or(ApiError::Unauthorized(Rejection::Missing.to_string()))?;
    verify_claims(app, token).map_err(unauthorized)
}

/// Checks the caller's token (and the subject's, if its claims were valid) and reads the
/// authorization epoch in one round trip; then each one's standing, from the cache or the
/// database. A caller that is revoked, gone or inactive is 401; a subject that is, inactive.
async fn check(
    app: &App,
    mut caller: Principal,
    subject: Option<Result<Principal, Rejection>>,
) -> Result<(Principal, Result<Principal, Rejection>), ApiError> {
    let mut keys = vec![token_keys(&caller)];
    if let Some(Ok(s)) = &subject {
        keys.push(token_keys(s));
    }
    let check = app.services.limiter.check_tokens(keys, true).await?;
    let (Some(caller_state), subject_state) = (check.states.first(), check.states.get(1)) else {
        return Err(ApiError::unavailable("redis"));
    };
    if revoked(&caller, caller_state) {
        return Err(ApiError::Unauthorized(Rejection::Revoked.to_string()));
    }
    let epoch = check.authz_epoch.as_deref();
    if !current_standing(app, &mut caller, epoch).await? {
        return Err(ApiError::Unauthorized(Rejection::Revoked.to_string()));
    }
    let subject = match (subject, subject_state) {
        (Some(Ok(mut p)), Some(state)) if !revoked(&p, state) => {
            if p.user_id == caller.user_id {
                p.roles.clone_from(&caller.roles);
                Ok(p)
            } else if current_standing(app, &mut p, epoch).await? {
                Ok(p)
            } else {
                Err(Rejection::Revoked)
            }
        }
        (Some(Err(rejection)), _) => Err(rejection),
        (Some(Ok(_)), _) => Err(Rejection::Revoked),
        (None, _) => Err(Rejection::Missing),
    };
    Ok((caller, subject))
}

/// Tells every instance that some user's roles or standing changed, after the change is
/// committed: their cached look-ups stop being used at once. If Redis cannot be told, the change
/// stands and the caller gets 503; caches then hold for at most `AUTHZ_CACHE_TTL`.
pub async fn standing_changed(app: &App) -> Result<(), ApiError> {
    Ok(app.services.limiter.bump_authz_epoch().await?)
}

/// Gives `principal` its user's current roles and tells whether the user exists and is active:
/// from the cache filed under the current epoch, or read from PostgreSQL and cached. Without an
/// epoch (Redis had none), the database is read and nothing is cached. A cache hit costs no
/// allocation when the roles are those of the token.
async fn current_standing(app: &App, principal: &mut Principal, epoch: Option<&str>) -> Result<bool, ApiError> {
    let user_id = principal.user_id;
    if let Some(epoch) = epoch
        && let Some(active) = app.authz.read(user_id, epoch, |standing| {
            if standing.roles != principal.roles {
                principal.roles.clone_from(&standing.roles);
            }
            standing.active
        })
    {
        app.metrics.authz_cache_hits.inc();
        return Ok(active);
    }
    app.metrics.authz_cache_misses.inc();
    let standing = match app.services.users.get_user(user_id).await? {
        Some(u) => Standing { active: u.is_active, roles: u.roles },
        None => Standing { active: false, roles: Vec::new() },
    };
    principal.roles.clone_from(&standing.roles);
    let active = standing.active;
    if let Some(epoch) = epoch {
        app.authz.put(user_id, epoch.to_string(), standing);
    }
    Ok(active)
}
