//! OpenID Connect on top of the provider: the ID token's claims (issued by
//! [`super::token::authorization_code`]), userinfo (Core §5.3), RP-initiated sign-out, and the
//! discovery document (RFC 8414, OpenID Connect Discovery) that standard clients read.

use auth_actors::db::sessions::{self, BrowserSession};
use auth_actors::db::users::UserRecord;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::authorize::{PageError, with_query};
use super::client_auth;
use super::protocol::{OAuthForm, has_scope};
use crate::app::App;
use crate::flows::error::{FlowError, Rejection};
use crate::flows::tokens::AccessClaims;

/// The claims of an ID token (OpenID Connect Core §2), with the user's claims by scope.
#[derive(Debug, Serialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub azp: String,
    pub at_hash: String,
    pub sid: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// How the user signed in (RFC 8176).
    pub amr: Vec<String>,
    /// The authentication context class the sign-in reached (`flows::mfa::acr`).
    pub acr: &'static str,
}

/// Who signed in, for an ID token: the user as they are now, the session the code opened, when
/// they signed in, and the authorization request's `nonce`.
pub struct SignedIn<'a> {
    pub user: &'a UserRecord,
    pub session: Uuid,
    pub auth_time: OffsetDateTime,
    pub nonce: Option<String>,
    /// How the user signed in (RFC 8176).
    pub amr: &'a [String],
}

/// The ID token issued beside `access_token` (which lives `ttl` seconds) to `client_id`: the
/// user's claims the granted `scope` allows (OpenID Connect Core §2, §5.4).
pub async fn id_token(
    app: &App,
    client_id: &str,
    signed_in: &SignedIn<'_>,
    scope: &str,
    access_token: &str,
    ttl: u64,
) -> Result<String, FlowError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let user = signed_in.user;
    let claims = IdClaims {
        iss: app.config.tokens.issuer.clone(),
        sub: user.id.to_string(),
        aud: client_id.to_string(),
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        auth_time: signed_in.auth_time.unix_timestamp(),
        nonce: signed_in.nonce.clone(),
        azp: client_id.to_string(),
        at_hash: at_hash(access_token),
        sid: signed_in.session,
        preferred_username: has_scope(scope, "profile").then(|| user.username.clone()),
        email: has_scope(scope, "email").then(|| user.email.clone()),
        email_verified: has_scope(scope, "email").then_some(user.email_verified),
        roles: has_scope(scope, "roles").then(|| user.roles.clone()),
        amr: signed_in.amr.to_vec(),
        acr: crate::flows::mfa::acr_of(signed_in.amr),
    };
    Ok(app.services.keys.sign("JWT", claims).await?)
}

/// `at_hash`: the left half of the SHA-256 of the access token, base64url (both RS256 and ES256
/// hash with SHA-256).
pub fn at_hash(access_token: &str) -> String {
    let d = digest(&SHA256, access_token.as_bytes());
    B64.encode(&d.as_ref()[..16])
}

/// The userinfo answer (OpenID Connect Core §5.3) for a verified access token: the claims its
/// scopes allow, of the user as they are now.
pub async fn userinfo(app: &App, claims: &AccessClaims) -> Result<serde_json::Value, FlowError> {
    let user_id: Uuid = claims.sub.parse().map_err(|_| FlowError::Token(Rejection::Invalid))?;
    let user = app
        .services
        .db
        .run(auth_actors::db::users::Get { id: user_id })
        .await?
        .filter(|u| u.is_active)
        .ok_or(FlowError::Token(Rejection::Revoked))?;
    let scope = claims.scope.as_deref().unwrap_or_default();
    let mut answer = serde_json::json!({ "sub": user.id });
    if has_scope(scope, "profile") {
        answer["preferred_username"] = user.username.into();
    }
    if has_scope(scope, "email") {
        answer["email"] = user.email.into();
        answer["email_verified"] = user.email_verified.into();
    }
    if has_scope(scope, "roles") {
        answer["roles"] = serde_json::json!(user.roles);
    }
    Ok(answer)
}

/// Checks the parameters of an RP-initiated sign-out, then tells where it may send the browser:
/// a `post_logout_redirect_uri` registered by the client that the ID token hint (or
/// `client_id`) names, with `state`.
///
/// A hint, when given, must be an ID token this service signed (OpenID Connect RP-Initiated
/// Logout §2: the OP MUST verify it), and a `client_id` given beside it must be its audience
/// (§3). Either failure is the error page, never a redirect and never a silent fall-back to the
/// other parameter: otherwise a hint of one client would send the browser to another's address.
pub async fn post_logout_target(app: &App, form: &OAuthForm) -> Result<Option<String>, PageError> {
    let hinted = match form.get("id_token_hint") {
        Some(hint) => Some(hinted_client(app, hint)?),
        None => None,
    };
    if let (Some(audience), Some(client_id)) = (&hinted, form.get("client_id"))
        && audience != client_id
    {
        return Err(PageError::BadRequest("the client_id is not the client the id_token_hint was issued to".into()));
    }
    let Some(uri) = form.get("post_logout_redirect_uri") else { return Ok(None) };
    let client_id = hinted.or_else(|| form.get("client_id").map(str::to_string)).ok_or_else(|| {
        PageError::BadRequest("post_logout_redirect_uri needs an id_token_hint or a client_id".into())
    })?;
    if !super::protocol::plausible_client_id(&client_id) {
        return Err(PageError::UnknownClient);
    }
    let entry = client_auth::client_entry(app, &client_id, None).await?.ok_or(PageError::UnknownClient)?;
    if !entry.metadata().post_logout_redirect_uris.iter().any(|r| r == uri) {
        return Err(PageError::BadRedirectUri);
    }
    Ok(Some(match form.get("state") {
        Some(state) => with_query(uri, &[("state", state)]),
        None => uri.to_string(),
    }))
}

/// The client an ID token hint was issued to (its `aud`), if this service signed it as an ID
/// token (`typ: JWT`, so an access token is no hint). A hint names the client even after it
/// expired (RP-Initiated Logout §2): it is accepted up to a browser session's lifetime later.
fn hinted_client(app: &App, hint: &str) -> Result<String, PageError> {
    let rules = auth_actors::keys::VerifyRules {
        typ: "JWT",
        audience: None,
        leeway: app.config.oauth.browser_session_ttl,
        ..crate::flows::authenticate::rules(app)
    };
    let claims = match app.services.keys.verify::<serde_json::Value>(hint, &rules) {
        Ok(claims) => claims,
        Err(auth_actors::key_manager::SignError::Call(e)) => return Err(PageError::Flow(e.into())),
        Err(_) => return Err(PageError::BadRequest("the id_token_hint is not an ID token this service issued".into())),
    };
    claims
        .get("aud")
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or_else(|| PageError::BadRequest("the id_token_hint names no client".into()))
}

/// Ends a browser session (its cookie) and fences off what it issued directly.
pub async fn sign_out(app: &App, session: &BrowserSession) -> Result<(), FlowError> {
    let revoke = sessions::RevokeOne { user_id: session.user.id, family_id: session.family_id };
    app.services.db.run(revoke).await?;
    crate::flows::logout::fence_sessions(app, session.user.id, vec![session.family_id]).await
}

/// The authorization-server metadata (RFC 8414) and OpenID Provider metadata (OpenID Connect
/// Discovery §3): only what this service really offers. The signing algorithms are those of the
/// keys the JWKS publishes now; the scopes are the OpenID Connect ones and those the registered
/// clients may be granted.
pub async fn discovery(app: &App) -> Result<serde_json::Value, FlowError> {
    let base = &app.config.tokens.public_url;
    let keys = app.services.keys.snapshot()?;
    let mut algs: Vec<&str> = keys.kids().map(|(_, alg, _)| alg.as_str()).collect();
    algs.sort_unstable_by_key(|alg| std::cmp::Reverse(*alg));
    algs.dedup();
    let mut scopes = app.services.db.run(auth_actors::db::clients::Scopes).await?;
    scopes.extend(super::protocol::OIDC_SCOPES.iter().map(|s| s.to_string()));
    scopes.sort_unstable();
    scopes.dedup();
    let methods: Vec<&str> = super::protocol::AUTH_METHODS.iter().map(|m| m.as_str()).collect();
    // A public client proves nothing, so it may not introspect.
    let confidential: Vec<&str> = methods.iter().copied().filter(|m| *m != "none").collect();
    let assertion_algs = super::protocol::ASSERTION_ALGS;
    Ok(serde_json::json!({
        "issuer": app.config.tokens.issuer,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "userinfo_endpoint": format!("{base}/oauth2/userinfo"),
        "end_session_endpoint": format!("{base}/oauth2/logout"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": super::protocol::GRANT_TYPES,
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
            "scope", "auth_time", "nonce", "azp", "at_hash", "preferred_username", "email_verified", "amr", "acr"
        ],
        "acr_values_supported": [crate::flows::mfa::acr::PASSWORD, crate::flows::mfa::acr::MFA],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_the_sha_256() {
        assert_eq!(at_hash("abc").len(), 22);
        assert_ne!(at_hash("abc"), at_hash("abd"));
    }
}
