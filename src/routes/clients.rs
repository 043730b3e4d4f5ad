//! `/api/v1/clients*`: the OAuth client registry, for admins, in RFC 7591 metadata.

use std::time::Duration;

use auth_actors::db::clients::ClientRecord;
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};
use serde::Deserialize;

use crate::app::App;
use crate::flows::authenticate::Principal;
use crate::flows::clients::{self, MetadataInput, Registered};
use crate::http::{ApiError, Request, Response, response};

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
    Ok(registered(StatusCode::CREATED, clients::register(app, Some(admin.user_id), input).await?))
}

pub async fn list(app: &App) -> Result<Response, ApiError> {
    let all = clients::list(app).await?;
    Ok(response::json(StatusCode::OK, &all.iter().map(client_json).collect::<Vec<_>>()))
}

pub async fn show(app: &App, req: &Request) -> Result<Response, ApiError> {
    Ok(response::json(StatusCode::OK, &client_json(&clients::show(app, client_id(req)).await?)))
}

pub async fn update(app: &App, mut req: Request, admin: Principal) -> Result<Response, ApiError> {
    let input: MetadataInput = req.json().await?;
    let id = client_id(&req).to_string();
    Ok(registered(StatusCode::OK, clients::update(app, Some(admin.user_id), &id, input).await?))
}

pub async fn delete(app: &App, req: &Request, admin: Principal) -> Result<Response, ApiError> {
    clients::delete(app, Some(admin.user_id), client_id(req)).await?;
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
    let (secret, until) = clients::rotate_secret(app, Some(admin.user_id), &id, overlap).await?;
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
