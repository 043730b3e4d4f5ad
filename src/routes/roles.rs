//! `/api/v1/roles/*`, `/api/v1/user_roles/*` and `/api/v1/admin/events`.

use auth_actors::db::roles::RoleRecord;
use hyper::StatusCode;

use super::users::user_json;
use crate::app::App;
use crate::flows::account::Page;
use crate::flows::authenticate::Principal;
use crate::flows::error::Entity;
use crate::flows::roles::{self, path_id};
use crate::http::{ApiError, Request, Response, response};

fn role_json(r: &RoleRecord) -> serde_json::Value {
    serde_json::json!({ "id": r.id, "name": r.name, "description": r.description, "created_at": response::rfc3339(r.created_at) })
}

pub async fn create(app: &App, mut req: Request, admin: Principal) -> Result<Response, ApiError> {
    let role = roles::create(app, &admin, req.json().await?).await?;
    Ok(response::json(StatusCode::CREATED, &role_json(&role)))
}

pub async fn list(app: &App, _req: Request, _caller: Principal) -> Result<Response, ApiError> {
    let all = roles::list(app).await?;
    Ok(response::json(StatusCode::OK, &all.iter().map(role_json).collect::<Vec<_>>()))
}

pub async fn update(app: &App, mut req: Request, admin: Principal) -> Result<Response, ApiError> {
    let id = path_id(req.params.first(), Entity::Role)?;
    let role = roles::update(app, &admin, id, req.json().await?).await?;
    Ok(response::json(StatusCode::OK, &role_json(&role)))
}

pub async fn delete(app: &App, req: Request, admin: Principal) -> Result<Response, ApiError> {
    roles::delete(app, &admin, path_id(req.params.first(), Entity::Role)?).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn assign(app: &App, mut req: Request, admin: Principal) -> Result<Response, ApiError> {
    let input: roles::Assign = req.json().await?;
    let user_id = input.user_id;
    let role = roles::assign(app, &admin, input).await?;
    Ok(response::json(
        StatusCode::CREATED,
        &serde_json::json!({ "user_id": user_id, "role_id": role.id, "role_name": role.name }),
    ))
}

pub async fn remove(app: &App, req: Request, admin: Principal) -> Result<Response, ApiError> {
    let user_id = path_id(req.params.first(), Entity::User)?;
    let role_id = path_id(req.params.get(1), Entity::Role)?;
    roles::remove(app, &admin, user_id, role_id).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn check(app: &App, mut req: Request, _caller: Principal) -> Result<Response, ApiError> {
    let allowed = roles::check(app, req.json().await?).await?;
    Ok(response::json(StatusCode::OK, &serde_json::json!({ "allowed": allowed })))
}

pub async fn me(app: &App, _req: Request, caller: Option<Principal>) -> Result<Response, ApiError> {
    Ok(response::json(StatusCode::OK, &roles::me(app, caller).await?))
}

pub async fn users(app: &App, req: Request, _admin: Principal) -> Result<Response, ApiError> {
    let page = Page::parse(req.query_param("page")?, req.query_param("size")?, 50)?;
    let (rows, total) = roles::users(app, page).await?;
    let items = rows
        .iter()
        .map(|u| {
            let mut v = user_json(u);
            v["roles"] = serde_json::json!(u.roles);
            v
        })
        .collect();
    Ok(response::json(StatusCode::OK, &page.envelope(items, total)))
}

pub async fn events(app: &App, req: Request, _admin: Principal) -> Result<Response, ApiError> {
    let page = Page::parse(req.query_param("page")?, req.query_param("size")?, 50)?;
    let (rows, total) = roles::events(app, req.query_param("type")?, req.query_param("user_id")?, page).await?;
    let items = rows
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id,
                "created_at": response::rfc3339(e.created_at),
                "type": e.event_type,
                "user_id": e.user_id,
                "actor_id": e.actor_id,
                "ip_address": e.ip_address,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(response::json(StatusCode::OK, &page.envelope(items, total)))
}
