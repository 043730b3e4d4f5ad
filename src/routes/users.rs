//! `/api/v1/users/*` and `/api/v1/sessions*`: signup, profile, history, sessions, deletion.

use auth_actors::db::users::UserRecord;
use hyper::StatusCode;

use crate::app::App;
use crate::flows::account::{self, Page};
use crate::flows::authenticate::Principal;
use crate::flows::signup;
use crate::http::{ApiError, Request, Response, response};

pub fn user_json(u: &UserRecord) -> serde_json::Value {
    serde_json::json!({
        "user_id": u.id,
        "username": u.username,
        "email": u.email,
        "email_verified": u.email_verified,
        "is_active": u.is_active,
    })
}

pub async fn signup(app: &App, mut req: Request) -> Result<Response, ApiError> {
    let user = signup::signup(app, req.json().await?).await?;
    Ok(response::json(StatusCode::CREATED, &user_json(&user)))
}

pub async fn history(app: &App, req: Request, principal: Principal) -> Result<Response, ApiError> {
    let page = Page::parse(req.query_param("page")?, req.query_param("size")?, 50)?;
    let (rows, total) = account::history(app, &principal, page).await?;
    let items = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "login_time": response::rfc3339(r.login_time),
                "ip_address": r.ip_address,
                "user_agent": r.user_agent,
                "successful": r.successful,
            })
        })
        .collect();
    Ok(response::json(StatusCode::OK, &page.envelope(items, total)))
}

pub async fn update_profile(app: &App, mut req: Request, principal: Principal) -> Result<Response, ApiError> {
    let client = req.peer();
    let user = account::update_profile(app, &principal, req.json().await?, &client).await?;
    Ok(response::json(StatusCode::OK, &user_json(&user)))
}

pub async fn delete(app: &App, req: Request, admin: Principal) -> Result<Response, ApiError> {
    account::delete_user(app, &admin, req.params.first().map(String::as_str).unwrap_or_default()).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn sessions(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    let rows = account::sessions(app, &principal).await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "created_at": response::rfc3339(s.created_at),
                "last_used_at": response::rfc3339(s.last_used_at),
                "ip_address": s.ip_address,
                "user_agent": s.user_agent,
                "kind": s.kind,
                "client_id": s.client_id,
                "amr": s.amr,
                "current": principal.session == s.id,
            })
        })
        .collect();
    Ok(response::json(StatusCode::OK, &items))
}

pub async fn revoke_session(app: &App, req: Request, principal: Principal) -> Result<Response, ApiError> {
    account::revoke_session(app, &principal, req.params.first().map(String::as_str).unwrap_or_default()).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}
