//! `/api/v1/mfa/webauthn/*` (a signed-in user's passkeys) and `/api/v1/auth/webauthn/*` (signing
//! in with one): JSON in, JSON out; the ceremonies are in [`crate::flows::webauthn`].

use hyper::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::App;
use crate::flows::authenticate::Principal;
use crate::flows::error::{Entity, FlowError};
use crate::flows::login;
use crate::flows::mfa::StepKind;
use crate::flows::webauthn::{self as flow, Ceremony, CredentialInfo};
use crate::http::{ApiError, Request, Response, response};

fn ceremony(c: Ceremony) -> Response {
    let mut body = c.options;
    if let Some(o) = body.as_object_mut() {
        o.insert("ceremony_id".into(), c.id.to_string().into());
    }
    let mut resp = response::json(StatusCode::OK, &body);
    resp.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    resp
}

fn credential_json(c: &CredentialInfo) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "name": c.name,
        "created_at": response::rfc3339(c.created_at),
        "last_used_at": c.last_used_at.map(response::rfc3339),
        "sign_count": c.sign_count,
        "backup_eligible": c.backup_eligible,
        "backup_state": c.backup_state,
    })
}

pub async fn register_start(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    Ok(ceremony(flow::register_start_for(app, principal.user_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFinish {
    ceremony_id: Uuid,
    credential: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
}

pub async fn register_finish(app: &App, mut req: Request, principal: Principal) -> Result<Response, ApiError> {
    let body: RegisterFinish = req.json().await?;
    let info =
        flow::register_finish(app, principal.user_id, body.ceremony_id, &body.credential, body.name, &req.peer())
            .await?;
    Ok(response::json(StatusCode::CREATED, &credential_json(&info)))
}

pub async fn credentials(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    let list = flow::list(app, principal.user_id).await?;
    Ok(response::json(StatusCode::OK, &list.iter().map(credential_json).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    password: String,
}

pub async fn delete_credential(app: &App, mut req: Request, principal: Principal) -> Result<Response, ApiError> {
    let id = req.params.first().and_then(|p| Uuid::parse_str(p).ok()).ok_or(FlowError::NotFound(Entity::Passkey))?;
    let body: DeleteBody = req.json().await?;
    flow::delete(app, principal.user_id, id, body.password, &req.peer()).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInStart {
    #[serde(default)]
    mfa_token: Option<String>,
}

pub async fn sign_in_start(app: &App, mut req: Request) -> Result<Response, ApiError> {
    super::auth::check_origin(app, &req)?;
    let body: SignInStart = req.json().await?;
    Ok(ceremony(flow::sign_in_start(app, body.mfa_token.as_deref(), StepKind::Api).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInFinish {
    ceremony_id: Uuid,
    credential: serde_json::Value,
    #[serde(default)]
    mfa_token: Option<String>,
}

pub async fn sign_in_finish(app: &App, mut req: Request) -> Result<Response, ApiError> {
    super::auth::check_origin(app, &req)?;
    let body: SignInFinish = req.json().await?;
    let peer = req.peer();
    let checked =
        flow::sign_in_finish(app, body.ceremony_id, body.mfa_token.as_deref(), StepKind::Api, &body.credential, &peer)
            .await?;
    let issued = login::start_api_session(app, &checked, &peer).await?;
    Ok(super::auth::issued(app, issued, false))
}
