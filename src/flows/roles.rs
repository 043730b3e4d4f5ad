//! Roles and grants (admin), the role check (admin or service), the caller's principal, and
//! the security-event log.

use auth_actors::db::events::EventRow;
use auth_actors::db::roles::{AssignOutcome, RoleRecord, RoleRef};
use auth_actors::db::users::UserRecord;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::account::Page;
use super::authenticate::{self, Principal};
use crate::app::App;
use crate::http::ApiError;

/// 1–64 characters of `[A-Za-z0-9_.:-]`.
fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable("role name must be 1-64 characters of letters, digits, _ . : -".into()))
    }
}

fn validate_description(description: Option<&str>) -> Result<(), ApiError> {
    match description {
        Some(d) if d.chars().count() > 500 => {
            Err(ApiError::Unprocessable("description must be at most 500 characters".into()))
        }
        _ => Ok(()),
    }
}

/// Parses a path id; anything that is not a uuid names nothing, so it is 404.
pub fn path_id(raw: Option<&String>, what: &str) -> Result<Uuid, ApiError> {
    raw.and_then(|r| r.parse().ok()).ok_or_else(|| ApiError::NotFound(format!("no such {what}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    pub name: String,
    pub description: Option<String>,
}

pub async fn create(app: &App, admin: &Principal, input: CreateRole) -> Result<RoleRecord, ApiError> {
    validate_name(&input.name)?;
    validate_description(input.description.as_deref())?;
    Ok(app.services.users.create_role(input.name, input.description, admin.user_id).await?)
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
}

pub async fn update(app: &App, admin: &Principal, id: Uuid, input: UpdateRole) -> Result<RoleRecord, ApiError> {
    if let Some(name) = &input.name {
        validate_name(name)?;
    }
    validate_description(input.description.as_ref().and_then(|d| d.as_deref()))?;
    let renamed = input.name.is_some();
    let role = app
        .services
        .users
        .update_role(id, input.name, input.description, admin.user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such role".into()))?;
    if renamed {
        authenticate::standing_changed(app).await?;
    }
    Ok(role)
}

pub async fn delete(app: &App, admin: &Principal, id: Uuid) -> Result<(), ApiError> {
    if app.services.users.delete_role(id, admin.user_id).await? {
        authenticate::standing_changed(app).await
    } else {
        Err(ApiError::NotFound("no such role".into()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub user_id: Uuid,
    pub role_id: Option<Uuid>,
    pub role_name: Option<String>,
}

pub async fn assign(app: &App, admin: &Principal, input: Assign) -> Result<RoleRecord, ApiError> {
    let role = match (input.role_id, input.role_name) {
        (Some(id), None) => RoleRef::Id(id),
        (None, Some(name)) => RoleRef::Name(name),
        _ => return Err(ApiError::Unprocessable("give exactly one of role_id and role_name".into())),
    };
    match app.services.users.assign_role(input.user_id, role, admin.user_id).await? {
        AssignOutcome::Assigned(role) => {
            authenticate::standing_changed(app).await?;
            Ok(role)
        }
        AssignOutcome::AlreadyAssigned => Err(ApiError::Conflict("the user already holds this role".into())),
        AssignOutcome::NoSuchUser => Err(ApiError::NotFound("no such user".into())),
        AssignOutcome::NoSuchRole => Err(ApiError::NotFound("no such role".into())),
    }
}

pub async fn remove(app: &App, admin: &Principal, user_id: Uuid, role_id: Uuid) -> Result<(), ApiError> {
    if app.services.users.remove_role(user_id, role_id, admin.user_id).await? {
        authenticate::standing_changed(app).await
    } else {
        Err(ApiError::NotFound("the user does not hold this role".into()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub user_id: Uuid,
    pub role_name: String,
}

pub async fn check(app: &App, input: Check) -> Result<bool, ApiError> {
    Ok(app.services.users.check_role(input.user_id, input.role_name).await?)
}

/// The caller's principal: from a valid token, else the guest principal. Never 401; a 503 only
/// when a dependency needed to decide is down.
pub async fn me(app: &App, bearer: Option<&str>) -> Result<serde_json::Value, ApiError> {
    if let Some(token) = bearer {
        match authenticate::verify(app, token).await {
            Ok(p) => {
                return Ok(
                    serde_json::json!({ "id": p.user_id, "username": p.username, "email": p.email, "roles": p.roles }),
                );
            }
            Err(Err(unavailable)) => return Err(unavailable),
            Err(Ok(_rejected)) => {}
        }
    }
    let roles: Vec<&str> = if app.services.users.role_exists("guest".into()).await? { vec!["guest"] } else { vec![] };
    Ok(serde_json::json!({ "id": null, "username": "guest", "email": null, "roles": roles }))
}

pub async fn users(app: &App, page: Page) -> Result<(Vec<UserRecord>, i64), ApiError> {
    Ok(app.services.users.users_page(page.size, page.offset()).await?)
}

pub async fn events(
    app: &App,
    event_type: Option<String>,
    user_id: Option<String>,
    page: Page,
) -> Result<(Vec<EventRow>, i64), ApiError> {
    let user_id = match user_id.filter(|u| !u.is_empty()) {
        Some(raw) => Some(raw.parse::<Uuid>().map_err(|_| ApiError::Unprocessable("user_id must be a uuid".into()))?),
        None => None,
    };
    let event_type = event_type.filter(|t| !t.is_empty());
    Ok(app.services.users.events(event_type, user_id, page.size, page.offset()).await?)
}
