//! Token introspection (RFC 7662), token revocation (RFC 7009) and the discovery document
//! (RFC 8414), all built on the same verifier as the protected routes.

use super::authenticate::Verdict;
use super::error::FlowError;
use super::tokens;
use crate::app::App;

/// The introspection answer for a token already put through the verifier (see
/// [`super::authenticate::introspector`]): `{active:false}` for anything that is not a live
/// access token of ours; its claims, with its user's current roles, otherwise. Refresh tokens
/// are opaque and never introspected as active.
pub fn introspection(verdict: &Verdict) -> serde_json::Value {
    let Verdict::Active(principal) = verdict else {
        return serde_json::json!({ "active": false });
    };
    let claims = &principal.claims;
    serde_json::json!({
        "active": true,
        "token_type": "Bearer",
        "sub": principal.user_id,
        "username": principal.username(),
        "email": principal.email(),
        "roles": principal.roles,
        "iss": claims.iss,
        "aud": claims.aud,
        "exp": claims.exp,
        "iat": claims.iat,
        "nbf": claims.nbf,
        "jti": claims.jti,
        "sid": claims.sid,
    })
}

/// Revokes whatever `token` is: an access token of ours is blacklisted until it expires; a
/// refresh token's whole session is revoked. Unknown tokens are ignored (the caller still gets
/// 200, as RFC 7009 requires). The two kinds cannot be confused (a refresh token is 32 opaque
/// bytes, an access token a JWS), so `token_type_hint` is accepted and not needed.
pub async fn revoke(app: &App, token: &str) -> Result<(), FlowError> {
    match tokens::decode_refresh(token) {
        Some(secret) => super::logout::revoke_refresh(app, &secret).await,
        None => super::logout::logout(app, None, Some(token)).await,
    }
}

/// The authorization-server metadata: only what this service really offers. The signing
/// algorithms are those of the keys the JWKS publishes now.
pub fn metadata(app: &App) -> Result<serde_json::Value, FlowError> {
    let base = &app.config.tokens.public_url;
    let keys = app.services.keys.snapshot()?;
    let mut algs: Vec<&str> = keys.kids().map(|(_, alg, _)| alg.as_str()).collect();
    algs.sort_unstable_by_key(|alg| std::cmp::Reverse(*alg));
    algs.dedup();
    Ok(serde_json::json!({
        "issuer": app.config.tokens.issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/api/v1/auth/login"),
        "token_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint": format!("{base}/api/v1/auth/introspect"),
        "revocation_endpoint": format!("{base}/api/v1/auth/revoke"),
        "revocation_endpoint_auth_methods_supported": ["none"],
        "access_token_signing_alg_values_supported": algs,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "type", "username", "email", "roles", "sid"],
    }))
}
