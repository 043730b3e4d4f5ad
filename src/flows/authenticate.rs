//! The one verifier every protected route (and introspection) uses.
//!
//! A Bearer token is accepted only if the KeyManager's current keys verify it (signature with
//! the algorithm bound to its `kid`, `typ: at+jwt`, `iss`, `aud`, `exp`, `nbf`), its `type`
//! claim is `access`, its `jti` is not blacklisted, its session has not been revoked, and it
//! was issued after the user's logout-all marker. Redis being unreachable fails closed (503), never open.

use auth_actors::keys::VerifyRules;
use uuid::Uuid;

use crate::app::App;
use crate::http::ApiError;

/// The caller behind a valid access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    /// Roles at the time the token was issued.
    pub roles: Vec<String>,
    pub jti: String,
    pub exp: i64,
    pub session: Option<Uuid>,
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
        session: claims.get("sid").and_then(|s| s.as_str()).and_then(|s| s.parse().ok()),
        claims,
    })
}

/// Milliseconds since the epoch at which a token was issued, from its v7 `jti`.
fn issued_ms(jti: &str) -> Option<i64> {
    let uuid: Uuid = jti.parse().ok()?;
    let (secs, nanos) = uuid.get_timestamp()?.to_unix();
    Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
}

/// Full verification of a token: claims, blacklist and logout-all marker.
pub async fn verify(app: &App, token: &str) -> Result<Principal, Result<Rejection, ApiError>> {
    let principal = verify_claims(app, token)?;
    let state = app
        .services
        .limiter
        .check_token(principal.jti.clone(), principal.user_id.to_string(), principal.session.map(|s| s.to_string()))
        .await
        .map_err(|e| Err(ApiError::from(e)))?;
    if state.blacklisted || state.session_revoked {
        return Err(Ok(Rejection::Revoked));
    }
    if let Some(marker) = state.not_before_ms {
        let issued = issued_ms(&principal.jti).unwrap_or(i64::MIN);
        if issued < marker {
            return Err(Ok(Rejection::Revoked));
        }
    }
    Ok(principal)
}

/// The principal of a request's Bearer token, or 401 (503 when a dependency is down).
pub async fn authenticate(app: &App, bearer: Option<&str>) -> Result<Principal, ApiError> {
    let token = bearer.ok_or(ApiError::Unauthorized(Rejection::Missing.to_string()))?;
    verify(app, token).await.map_err(|e| match e {
        Ok(rejection) => ApiError::Unauthorized(rejection.to_string()),
        Err(api) => api,
    })
}

/// Like [`authenticate`], then requires one of `roles` in the user's *current* roles (read
/// from the database, so a revoked role stops working at once): 403 otherwise.
pub async fn require_role(app: &App, bearer: Option<&str>, roles: &[&str]) -> Result<Principal, ApiError> {
    let principal = authenticate(app, bearer).await?;
    let user = app.services.users.get_user(principal.user_id).await?;
    match user {
        Some(u) if u.is_active && u.roles.iter().any(|r| roles.contains(&r.as_str())) => Ok(principal),
        Some(u) if u.is_active => Err(ApiError::Forbidden(format!("requires role {}", roles.join(" or ")))),
        _ => Err(ApiError::Unauthorized(Rejection::Revoked.to_string())),
    }
}
