//! Token introspection (RFC 7662) and token revocation (RFC 7009), built on the same verifier
//! as the protected routes ([`crate::flows::authenticate`]).

use super::client_auth::AuthenticatedClient;
use crate::app::App;
use crate::flows::authenticate::{self, Subject, Verdict};
use crate::flows::error::{FlowError, Rejection};
use crate::flows::tokens::AccessClaims;
use crate::secret::Secret;

/// The introspection answer for a token already put through the verifier (see
/// [`crate::routes::access`] and [`authenticate::verdict`]): `{active:false}`
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
    if let Some(secret) = Secret::parse(token) {
        let client = match by {
            Revoker::Holder => None,
            Revoker::Client(c) => Some(c),
        };
        return crate::flows::logout::revoke_refresh_of(app, &secret, client).await;
    }
    let subject = match authenticate::subject_claims(app, token) {
        Ok(s) => s,
        Err(FlowError::Token(_)) => return Ok(()),
        Err(outage) => return Err(outage),
    };
    if let Revoker::Client(client) = by
        && subject.claims().client_id.as_deref() != Some(client)
    {
        return Err(FlowError::NotYours);
    }
    crate::flows::logout::blacklist_subject(app, &subject).await
}

/// The verdict on `token` for the resource server `client` (RFC 7662 §2.1): active only for a
/// token issued to the client itself or meant for an audience the client is registered to
/// serve (SPEC §7); any other token, however valid, is inactive to it, so a client cannot learn
/// who holds tokens meant for someone else.
pub async fn verdict_for_client(app: &App, client: &AuthenticatedClient, token: &str) -> Result<Verdict, FlowError> {
    Ok(match authenticate::verdict(app, token).await? {
        Verdict::Active(subject) if serves(client, subject.claims()) => Verdict::Active(subject),
        Verdict::Active(_) => Verdict::Inactive(Rejection::Invalid),
        inactive => inactive,
    })
}

fn serves(client: &AuthenticatedClient, claims: &AccessClaims) -> bool {
    claims.client_id.as_deref() == Some(client.id()) || client.entry.metadata().audience.as_deref() == Some(&claims.aud)
}
