//! The provider's HTTP face: the token endpoint, introspection and revocation (RFC 6749, 7662,
//! 7009), and the client registry for admins (`/api/v1/clients`, RFC 7591 metadata); the
//! hosted pages are in [`pages`] (the browser flow), [`account`] (the account's mailed
//! links) and [`security`] (the account's second factors). Each handler parses, calls the provider, renders.

pub mod account;
pub mod pages;
pub mod security;

use std::time::Duration;

use auth_actors::db::clients::ClientRecord;
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};
use serde::Deserialize;

use super::introspection::{self, Revoker};
use super::protocol::OAuthForm;
use super::registry::{self, MetadataInput, Registered};
use super::token;
use crate::app::App;
use crate::flows::authenticate::Principal;
use crate::http::{ApiError, Request, Response, response};
use crate::routes::access::{ClientCall, Introspection, Revocation, required_token};

/// RFC 7662, for callers holding the admin or service role, and for authenticated clients; the
/// caller and the subject token were checked before the handler runs.
pub async fn introspect(_app: &App, _req: Request, caller: Introspection) -> Result<Response, ApiError> {
    let body = introspection::introspection(&caller.subject);
    let mut resp = response::json(StatusCode::OK, &body);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// RFC 7009 at `/api/v1/auth/revoke`: 200 whatever the token was, for its holder; a client (if
/// one authenticates) may revoke only its own.
pub async fn revoke(app: &App, _req: Request, caller: Revocation) -> Result<Response, ApiError> {
    let by = caller.client.as_ref().map_or(Revoker::Holder, |c| Revoker::Client(c.id()));
    revoked(app, &caller.form, by).await
}

/// RFC 7009 at `/oauth2/revoke`: an authenticated client revokes one of its own tokens.
pub async fn revoke_by_client(app: &App, _req: Request, caller: ClientCall) -> Result<Response, ApiError> {
    revoked(app, &caller.form, Revoker::Client(caller.client.id())).await
}

async fn revoked(app: &App, form: &OAuthForm, by: Revoker<'_>) -> Result<Response, ApiError> {
    introspection::revoke(app, required_token(form)?, by).await?;
    let mut resp = response::empty(StatusCode::OK);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /oauth2/token` (RFC 6749 §3.2): the token response, never cached.
pub async fn token(app: &App, req: Request, caller: ClientCall) -> Result<Response, ApiError> {
    let issued = token::token(app, &caller.client, &caller.form, &req.peer()).await?;
    let mut resp = response::json(StatusCode::OK, &issued);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(hyper::header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// A client as RFC 7591 §3.2.1 shows it, with this service's own fields.
pub fn client_json(c: &ClientRecord) -> serde_json::Value {
    let m = &c.metadata;
    let mut v = serde_json::json!({
        "client_id": c.client_id,
        "client_id_issued_at": c.created_at.unix_timestamp(),
        "client_name": m.client_name,
        "token_endpoint_auth_method": m.auth_method.as_str(),
        "grant_types": m.grant_types,
        "redirect_uris": m.redirect_uris,
        "post_logout_redirect_uris": m.post_logout_redirect_uris,
        "scope": m.scope,
        "first_party": m.first_party,
        "require_mfa": m.require_mfa,
        "audience": m.audience,
        "access_token_ttl": m.access_token_ttl,
    });
    if let Some(jwks) = &m.jwks {
        v["jwks"] = jwks.clone();
    }
    if let Some(uri) = &m.jwks_uri {
        v["jwks_uri"] = uri.clone().into();
    }
    v
}

/// The registration response: the client, and its secret when one was just made (shown only
/// here; `client_secret_expires_at` 0: it does not expire).
fn registered(status: StatusCode, r: Registered) -> Response {
    let mut body = client_json(&r.client);
    if let Some(secret) = r.secret {
        body["client_secret"] = secret.into();
        body["client_secret_expires_at"] = 0.into();
    }
    let mut resp = response::json(status, &body);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn client_id(req: &Request) -> &str {
    req.params.first().map(String::as_str).unwrap_or_default()
}

pub async fn create(app: &App, mut req: Request, admin: Principal) -> Result<Response, ApiError> {
    let input: MetadataInput = req.json().await?;
    Ok(registered(StatusCode::CREATED, registry::register(app, Some(admin.user_id), input).await?))
}

pub async fn list(app: &App, _req: Request, _admin: Principal) -> Result<Response, ApiError> {
    let all = registry::list(app).await?;
    Ok(response::json(StatusCode::OK, &all.iter().map(client_json).collect::<Vec<_>>()))
}

pub async fn show(app: &App, req: Request, _admin: Principal) -> Result<Response, ApiError> {
    Ok(response::json(StatusCode::OK, &client_json(&registry::show(app, client_id(&req)).await?)))
}

pub async fn update(app: &App, mut req: Request, admin: Principal) -> Result<Response, ApiError> {
    let input: MetadataInput = req.json().await?;
    let id = client_id(&req).to_string();
    Ok(registered(StatusCode::OK, registry::update(app, Some(admin.user_id), &id, input).await?))
}

pub async fn delete(app: &App, req: Request, admin: Principal) -> Result<Response, ApiError> {
    registry::delete(app, Some(admin.user_id), client_id(&req)).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateInput {
    /// How long the previous secret keeps working (default `CLIENT_SECRET_OVERLAP`).
    overlap_seconds: Option<u64>,
}

pub async fn rotate_secret(app: &App, mut req: Request, admin: Principal) -> Result<Response, ApiError> {
    let input: RotateInput = if req.body_is_empty() { RotateInput::default() } else { req.json().await? };
    let overlap = input.overlap_seconds.map(Duration::from_secs);
    let id = client_id(&req).to_string();
    let (secret, until) = registry::rotate_secret(app, Some(admin.user_id), &id, overlap).await?;
    let body = serde_json::json!({
        "client_id": id,
        "client_secret": secret,
        "client_secret_expires_at": 0,
        "previous_secrets_expire_at": until.unix_timestamp(),
    });
    let mut resp = response::json(StatusCode::OK, &body);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
