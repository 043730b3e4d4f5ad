//! Token introspection (RFC 7662), token revocation (RFC 7009) and the discovery document
//! (RFC 8414), all built on the same verifier as the protected routes.

use super::authenticate::{Subject, Verdict};
use super::error::FlowError;
use super::tokens;
use crate::app::App;

/// The introspection answer for a token already put through the verifier (see
/// [`super::authenticate::introspector`] and [`super::authenticate::verdict`]): `{active:false}`
/// for anything that is not a live access token of ours; its claims otherwise, with a user's
/// current roles. Refresh tokens are opaque and never introspected as active.
pub fn introspection(verdict: &Verdict) -> serde_json::Value {
    let Verdict::Active(subject) = verdict else {
        return serde_json::json!({ "active": false });
    };
    let claims = subject.claims();
    let mut answer = serde_json::json!({
        "active": true,
        "token_type": "Bearer",
        "sub": claims.sub,
        "iss": claims.iss,
        "aud": claims.aud,
        "exp": claims.exp,
        "iat": claims.iat,
        "nbf": claims.nbf,
        "jti": claims.jti,
    });
    if let Subject::User(p) = subject {
        answer["username"] = p.username().into();
        answer["email"] = p.email().into();
        answer["roles"] = serde_json::json!(p.roles);
        answer["sid"] = serde_json::json!(p.session);
    }
    if let Some(client) = &claims.client_id {
        answer["client_id"] = client.clone().into();
    }
    if let Some(scope) = &claims.scope {
        answer["scope"] = scope.clone().into();
    }
    answer
}

/// Who asks for a revocation: the holder of the token (anyone), or an authenticated client,
/// which may revoke only the tokens issued to it (RFC 7009 §2.1).
pub enum Revoker<'a> {
    Holder,
    Client(&'a str),
}

/// Revokes whatever `token` is: an access token of ours is blacklisted until it expires; a
/// refresh token's whole session is revoked. Unknown tokens are ignored (the caller still gets
/// 200, as RFC 7009 requires). The two kinds cannot be confused (a refresh token is 32 opaque
/// bytes, an access token a JWS), so `token_type_hint` is accepted and not needed. A client
/// that revokes a token issued to another client (or to no client) is refused with
/// [`FlowError::NotYours`], and nothing is revoked.
pub async fn revoke(app: &App, token: &str, by: Revoker<'_>) -> Result<(), FlowError> {
    if let Some(secret) = tokens::decode_refresh(token) {
        let client = match by {
            Revoker::Holder => None,
            Revoker::Client(c) => Some(c),
        };
        return super::logout::revoke_refresh_of(app, &secret, client).await;
    }
    let subject = match super::authenticate::subject_claims(app, token) {
        Ok(s) => s,
        Err(FlowError::Token(_)) => return Ok(()),
        Err(outage) => return Err(outage),
    };
    if let Revoker::Client(client) = by
        && subject.claims().client_id.as_deref() != Some(client)
    {
        return Err(FlowError::NotYours);
    }
    super::logout::blacklist_subject(app, &subject).await
}
/// The authorization-server metadata (RFC 8414) and OpenID Provider metadata (OpenID Connect
/// Discovery §3): only what this service really offers. The signing algorithms are those of the
/// keys the JWKS publishes now; the scopes are the OpenID Connect ones and those the registered
/// clients may be granted.
pub async fn metadata(app: &App) -> Result<serde_json::Value, FlowError> {
    let base = &app.config.tokens.public_url;
    let keys = app.services.keys.snapshot()?;
    let mut algs: Vec<&str> = keys.kids().map(|(_, alg, _)| alg.as_str()).collect();
    algs.sort_unstable_by_key(|alg| std::cmp::Reverse(*alg));
    algs.dedup();
    let mut scopes = app.services.users.run(auth_actors::db::clients::Scopes).await?;
    scopes.extend(super::clients::OIDC_SCOPES.iter().map(|s| s.to_string()));
    scopes.sort_unstable();
    scopes.dedup();
    let methods: Vec<&str> = super::clients::AUTH_METHODS.iter().map(|m| m.as_str()).collect();
    // A public client proves nothing, so it may not introspect.
    let confidential: Vec<&str> = methods.iter().copied().filter(|m| *m != "none").collect();
    let assertion_algs = super::clients::ASSERTION_ALGS;
    Ok(serde_json::json!({
        "issuer": app.config.tokens.issuer,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "userinfo_endpoint": format!("{base}/oauth2/userinfo"),
        "end_session_endpoint": format!("{base}/oauth2/logout"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": super::clients::GRANT_TYPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": scopes,
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "introspection_endpoint_auth_methods_supported": confidential,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "revocation_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "access_token_signing_alg_values_supported": algs,
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "type", "username", "email", "roles", "sid", "client_id",
            "scope", "auth_time", "nonce", "azp", "at_hash", "preferred_username", "email_verified"
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}
