//! The token endpoint (`POST /oauth2/token`, RFC 6749 §3.2) for a client that
//! [`super::client_auth`] has authenticated, with its three grants, each named for what it
//! exchanges:
//!
//! - [`authorization_code`]: redeems a code of the browser flow ([`super::authorize`]) once (a
//!   second use fails and revokes the session the first one opened), checks the redirect URI and
//!   the PKCE verifier, opens a session bound to the client (kind `oauth`), and answers the access
//!   token, an ID token ([`super::openid`]) when `openid` was granted, and a refresh token when
//!   `offline_access` was.
//!
//!   The exchange runs in one statement, `db::grants::ExchangeCode`: it marks the code used (a
//!   compare-and-swap on `used_at IS NULL`, for the client it was issued to), compares the redirect
//!   URI, the PKCE challenge with the S256 of the verifier and the user's standing, and — when all
//!   hold — opens a session of kind `oauth` bound to the client and scope (with its first refresh
//!   token if `offline_access` was granted, otherwise living only as long as the access token),
//!   records it on the code, and returns the user with its roles. A twin presented meanwhile waits
//!   on the code's row lock, then finds the code used and the session recorded: it revokes and
//!   fences that session. Nothing between the two halves of an exchange can interleave, because
//!   there are no two halves. Then the access token and (for `openid`) the ID token are signed by
//!   the KeyManager. Codes a day past their expiry are purged, a hundred at a time, as new ones are
//!   issued.
//! - `client_credentials`: a token whose `sub` and `client_id` are the client.
//! - `refresh_token`: a session bound to the client, rotated by the one rotation
//!   `/api/v1/auth/refresh` uses ([`crate::flows::refresh`]), with the same grace window and
//!   reuse detection.
//!
//! The client must be registered for the grant (`unauthorized_client`); the scopes asked for must
//! be among its own (`invalid_scope`); no scope asked for means all of them.
//!
//! A `resource` parameter (RFC 8707) must name the audience the client is registered for
//! (`invalid_target` otherwise). A token's `aud` is that audience, or else the client's own id;
//! only a `first_party` client can be registered for this service's own API (`JWT_AUDIENCE`).

use std::time::Duration;

use auth_actors::db::grants::{self, Exchange, Refusal};
use auth_actors::db::sessions::{self, NewToken};
use auth_actors::db::users::UserRecord;
use time::OffsetDateTime;
use uuid::Uuid;

use super::client_auth::AuthenticatedClient;
use super::openid::{self, SignedIn};
use super::protocol::{
    GRANT_TYPES, OAuthError, OAuthForm, TokenResponse, has_scope, s256, valid_pkce, valid_scope_token,
};
use crate::app::App;
use crate::domain::Peer;
use crate::flows::error::FlowError;
use crate::flows::refresh::{self, Rotation};
use crate::flows::tokens::{self, AccessClaims, TokenKind};
use crate::metrics::{GrantLabels, GrantOutcome};
use crate::secret::Secret;

/// `POST /oauth2/token` for an authenticated client.
pub async fn token(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
    peer: &Peer,
) -> Result<TokenResponse, OAuthError> {
    let grant = form.get("grant_type");
    let result = match grant {
        None => Err(OAuthError::InvalidRequest("grant_type is required".into())),
        Some(g) if !GRANT_TYPES.contains(&g) => {
            Err(OAuthError::UnsupportedGrantType(format!("grant type {g:?} is not supported")))
        }
        Some(g) if !client.entry.metadata().grant_types.iter().any(|r| r == g) => {
            Err(OAuthError::UnauthorizedClient(format!("the client is not registered for the {g} grant")))
        }
        _ if form.get("resource").is_some_and(|r| Some(r) != client.entry.metadata().audience.as_deref()) => {
            Err(OAuthError::InvalidTarget("the client is not registered for this resource".into()))
        }
        Some("authorization_code") => authorization_code(app, client, form, peer).await,
        Some("client_credentials") => client_credentials(app, client, form).await,
        Some(_) => refresh_token(app, client, form, peer).await,
    };
    count_token_request(app, form, result.as_ref().map(|_| ()));
    result
}

/// Counts a token request by grant type and outcome, including one refused before its grant
/// was looked at (client authentication, the client gate).
pub fn count_token_request(app: &App, form: &OAuthForm, result: Result<(), &OAuthError>) {
    let grant_type = match form.get("grant_type") {
        Some("authorization_code") => "authorization_code",
        Some("client_credentials") => "client_credentials",
        Some("refresh_token") => "refresh_token",
        _ => "other",
    };
    let outcome = match result {
        Ok(()) => GrantOutcome::issued,
        Err(e) => e.outcome(),
    };
    app.metrics.token_requests.get_or_create(&GrantLabels { grant_type, outcome }).inc();
}

/// The scope to grant: what was asked for, if the client may have all of it; else everything the
/// client may have.
fn granted_scope(client: &AuthenticatedClient, requested: Option<&str>) -> Result<String, OAuthError> {
    match requested {
        None => Ok(client.entry.metadata().scope.clone()),
        Some(r) => {
            let mut scopes: Vec<&str> = r.split(' ').filter(|s| !s.is_empty()).collect();
            if scopes.iter().any(|s| !valid_scope_token(s)) {
                return Err(OAuthError::InvalidScope("malformed scope".into()));
            }
            if !client.entry.allows_scopes(r) {
                return Err(OAuthError::InvalidScope("a requested scope is not allowed for this client".into()));
            }
            scopes.sort_unstable();
            scopes.dedup();
            Ok(scopes.join(" "))
        }
    }
}

fn ttl_of(app: &App, client: &AuthenticatedClient) -> u64 {
    client.entry.metadata().access_token_ttl.map_or(app.config.tokens.access_ttl.as_secs(), |t| t.max(1) as u64)
}

/// The `aud` of an access token issued to `client`: the audience it was registered for, or
/// else the client itself. Only a first-party client can be registered for this service's own
/// API (`JWT_AUDIENCE`, see [`super::registry::check_audience`]), so no other client's token is
/// ever accepted there (SPEC §7, "Who may use a token where").
fn audience_of(client: &AuthenticatedClient) -> String {
    client.entry.metadata().audience.clone().unwrap_or_else(|| client.id().to_string())
}

/// `grant_type=authorization_code`: redeems a code of the browser flow; see the module
/// documentation.
pub async fn authorization_code(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
    peer: &Peer,
) -> Result<TokenResponse, OAuthError> {
    let invalid = |d: &str| OAuthError::InvalidGrant(d.into());
    let code = form.get("code").ok_or_else(|| OAuthError::InvalidRequest("code is required".into()))?;
    let redirect_uri =
        form.get("redirect_uri").ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is required".into()))?;
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| OAuthError::InvalidRequest("code_verifier is required (PKCE)".into()))?;
    if !valid_pkce(verifier) {
        return Err(OAuthError::InvalidRequest("code_verifier must be 43 to 128 unreserved characters".into()));
    }
    let code = Secret::parse(code).ok_or_else(|| invalid("invalid or expired code"))?;
    let t = &app.config.tokens;
    let refresh = Secret::generate().map_err(FlowError::from)?;
    let family = Uuid::now_v7();
    let exchange = grants::ExchangeCode {
        code_hash: code.digest(),
        client_id: client.id().to_string(),
        redirect_uri: redirect_uri.to_string(),
        challenge: s256(verifier),
        family_id: family,
        token: NewToken {
            id: Uuid::now_v7(),
            hash: refresh.digest(),
            expires_at: OffsetDateTime::now_utc() + t.refresh_ttl,
        },
        refresh_allowed: client.entry.metadata().grant_types.iter().any(|g| g == "refresh_token"),
        access_ttl: Duration::from_secs(ttl_of(app, client)),
        ip_address: peer.ip_string(),
        user_agent: peer.user_agent.clone(),
    };
    let (user, scope, nonce, auth_time, offline, amr) = match app.services.db.run(exchange).await? {
        Exchange::Started { user, scope, nonce, auth_time, offline, amr } => {
            (user, scope, nonce, auth_time, offline, amr)
        }
        Exchange::Refused(Refusal::RedirectUri) => {
            return Err(invalid("redirect_uri differs from the authorization request's"));
        }
        Exchange::Refused(Refusal::Verifier) => {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        Exchange::Refused(Refusal::UserGone) => return Err(invalid("the user can no longer sign in")),
        Exchange::Replayed { user_id, family_id } => {
            if let Some(family_id) = family_id {
                app.services.db.run(sessions::RevokeOne { user_id, family_id }).await?;
                crate::flows::logout::fence_sessions(app, user_id, vec![family_id]).await?;
            }
            return Err(invalid("the code was already used; the tokens it issued are revoked"));
        }
        Exchange::Invalid => return Err(invalid("invalid or expired code")),
    };
    let (access_token, ttl) = issue_for_user(app, client, &user, family, &amr, &scope).await?;
    let id_token = match has_scope(&scope, "openid") {
        false => None,
        true => {
            let signed_in = SignedIn { user: &user, session: family, auth_time, nonce, amr: &amr };
            Some(openid::id_token(app, client.id(), &signed_in, &scope, &access_token, ttl).await?)
        }
    };
    let refresh_token = offline.then(|| refresh.encode());
    Ok(TokenResponse { id_token, ..TokenResponse::bearer(access_token, ttl, scope, refresh_token) })
}

/// An access token for `user`'s session `family` of `client`, with its lifetime in seconds.
async fn issue_for_user(
    app: &App,
    client: &AuthenticatedClient,
    user: &UserRecord,
    family: Uuid,
    amr: &[String],
    scope: &str,
) -> Result<(String, u64), FlowError> {
    let to = tokens::IssuedTo {
        client_id: client.id(),
        audience: audience_of(client),
        scope: scope.to_string(),
        ttl: ttl_of(app, client),
    };
    tokens::issue_access(app, user, family, amr, Some(to)).await
}

async fn client_credentials(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
) -> Result<TokenResponse, OAuthError> {
    let scope = granted_scope(client, form.get("scope"))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let ttl = ttl_of(app, client);
    let claims = AccessClaims {
        iss: app.config.tokens.issuer.clone(),
        sub: client.id().to_string(),
        aud: audience_of(client),
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        jti: Uuid::now_v7(),
        kind: TokenKind::Access,
        username: None,
        email: None,
        roles: None,
        sid: None,
        client_id: Some(client.id().to_string()),
        scope: Some(scope.clone()),
        amr: None,
    };
    let access_token = app.services.keys.sign("at+jwt", claims).await.map_err(FlowError::from)?;
    app.metrics.tokens_issued.inc();
    Ok(TokenResponse::bearer(access_token, ttl, scope, None))
}

/// The refresh-token grant: the session must be bound to this client; the rotation is the one
/// `/api/v1/auth/refresh` uses. A narrower `scope` than the session's may be asked for (RFC 6749
/// §6); a wider one is `invalid_scope`.
async fn refresh_token(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
    peer: &Peer,
) -> Result<TokenResponse, OAuthError> {
    let presented =
        form.get("refresh_token").ok_or_else(|| OAuthError::InvalidRequest("refresh_token is required".into()))?;
    let invalid = || OAuthError::InvalidGrant("invalid, expired or revoked refresh token".into());
    let parent = Secret::parse(presented).ok_or_else(invalid)?;
    // A scope wider than the session's is refused before anything is written, so the client
    // keeps a token it can refresh.
    let asked: Option<Vec<String>> =
        form.get("scope").map(|asked| asked.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect());
    let rotated = match refresh::rotate(app, &parent, peer, Some(client.id()), asked).await? {
        Rotation::Rotated(r) => r,
        Rotation::Reused => {
            return Err(OAuthError::InvalidGrant("refresh token reuse detected; the session has been revoked".into()));
        }
        Rotation::ScopeExceeded => {
            return Err(OAuthError::InvalidScope("a refresh cannot widen the session's scope".into()));
        }
        Rotation::Invalid => return Err(invalid()),
    };
    let (Some(refresh_token), true) = (rotated.refresh_token, rotated.user.is_active) else { return Err(invalid()) };
    let (user, family, scope, amr) = (rotated.user, rotated.family, rotated.scope, rotated.amr);
    // The rotation checked that what was asked for is within the session's scope.
    let scope = form.get("scope").map(str::to_string).unwrap_or_else(|| scope.unwrap_or_default());
    let (access_token, ttl) = issue_for_user(app, client, &user, family, &amr, &scope).await?;
    Ok(TokenResponse::bearer(access_token, ttl, scope, Some(refresh_token)))
}
