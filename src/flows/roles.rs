//! Roles and grants (admin), the role check (admin or service), the caller's principal, and
//! the security-event log. A change of roles reaches every instance's cache at once: the
//! Database replaces the authorization epoch after each such change commits.

use auth_actors::db::events::{self, EventRow};
use auth_actors::db::roles::{self, AssignOutcome, RemoveOutcome, RoleChange, RoleRecord, RoleRef};
use auth_actors::db::users::{self, UserRecord};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::account::Page;
use super::authenticate::Principal;
use super::error::{Entity, FlowError};
use crate::app::App;
use crate::domain::{FieldError, RoleDescription, RoleName};

/// Parses a path id; anything that is not a uuid names nothing, so it is 404.
pub fn path_id(raw: Option<&String>, what: Entity) -> Result<Uuid, FlowError> {
    raw.and_then(|r| r.parse().ok()).ok_or(FlowError::NotFound(what))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    pub name: RoleName,
    pub description: Option<RoleDescription>,
}

pub async fn create(app: &App, admin: &Principal, input: CreateRole) -> Result<RoleRecord, FlowError> {
    let create = roles::Create {
        name: input.name.into_inner(),
        description: input.description.map(RoleDescription::into_inner),
        actor: admin.user_id,
    };
    Ok(app.services.db.run(create).await?)
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<RoleDescription>>, D::Error> {
    Option::<RoleDescription>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    pub name: Option<RoleName>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<RoleDescription>>,
}

pub async fn update(app: &App, admin: &Principal, id: Uuid, input: UpdateRole) -> Result<RoleRecord, FlowError> {
    let update = roles::Update {
        id,
        name: input.name.map(RoleName::into_inner),
        description: input.description.map(|d| d.map(RoleDescription::into_inner)),
        actor: admin.user_id,
    };
    changed(app.services.db.run(update).await?)
}

pub async fn delete(app: &App, admin: &Principal, id: Uuid) -> Result<(), FlowError> {
    changed(app.services.db.run(roles::Delete { id, actor: admin.user_id }).await?)
}

fn changed<T>(change: RoleChange<T>) -> Result<T, FlowError> {
    match change {
        RoleChange::Done(v) => Ok(v),
        RoleChange::NoSuchRole => Err(FlowError::NotFound(Entity::Role)),
        RoleChange::BuiltIn(name) => Err(FlowError::BuiltInRole(name)),
        RoleChange::ReservedName(name) => Err(FlowError::ReservedRoleName(name)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub user_id: Uuid,
    pub role_id: Option<Uuid>,
    pub role_name: Option<String>,
}

pub async fn assign(app: &App, admin: &Principal, input: Assign) -> Result<RoleRecord, FlowError> {
    let role = match (input.role_id, input.role_name) {
        (Some(id), None) => RoleRef::Id(id),
        (None, Some(name)) => RoleRef::Name(name),
        _ => return Err(FieldError::new("role", "give exactly one of role_id and role_name").into()),
    };
    match app.services.db.run(roles::Assign { user_id: input.user_id, role, actor: admin.user_id }).await? {
        AssignOutcome::Assigned(role) => Ok(role),
        AssignOutcome::AlreadyAssigned => Err(FlowError::RoleAlreadyHeld),
        AssignOutcome::NoSuchUser => Err(FlowError::NotFound(Entity::User)),
        AssignOutcome::NoSuchRole => Err(FlowError::NotFound(Entity::Role)),
    }
}

pub async fn remove(app: &App, admin: &Principal, user_id: Uuid, role_id: Uuid) -> Result<(), FlowError> {
    match app.services.db.run(roles::Remove { user_id, role_id, actor: admin.user_id }).await? {
        RemoveOutcome::Removed => Ok(()),
        RemoveOutcome::NotHeld => Err(FlowError::RoleNotHeld),
        RemoveOutcome::LastAdmin => Err(FlowError::LastAdmin),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub user_id: Uuid,
    pub role_name: String,
}

pub async fn check(app: &App, input: Check) -> Result<bool, FlowError> {
    Ok(app.services.db.run(roles::Check { user_id: input.user_id, role_name: input.role_name }).await?)
}

/// The caller's principal, or the guest principal. Never 401; a 503 only when a dependency
/// needed to decide is down.
pub async fn me(app: &App, caller: Option<Principal>) -> Result<serde_json::Value, FlowError> {
    if let Some(p) = caller {
        return Ok(serde_json::json!({
            "id": p.user_id,
            "username": p.username(),
            "email": p.email(),
            "email_verified": p.email_verified(),
            "roles": p.roles,
        }));
    }
    let guest = app.services.db.run(roles::Exists { name: "guest".into() }).await?;
    let roles: Vec<&str> = if guest { vec!["guest"] } else { vec![] };
    Ok(serde_json::json!({ "id": null, "username": "guest", "email": null, "email_verified": null, "roles": roles }))
}

pub async fn users(app: &App, page: Page) -> Result<(Vec<UserRecord>, i64), FlowError> {
    Ok(app.services.db.run(users::Page { limit: page.size, offset: page.offset() }).await?)
}

pub async fn events(
    app: &App,
    event_type: Option<String>,
    user_id: Option<String>,
    page: Page,
) -> Result<(Vec<EventRow>, i64), FlowError> {
    let user_id = match user_id.filter(|u| !u.is_empty()) {
        Some(raw) => Some(raw.parse::<Uuid>().map_err(|_| FieldError::new("user_id", "user_id must be a uuid"))?),
        None => None,
    };
    let event_type = event_type.filter(|t| !t.is_empty());
    let query = events::Page { event_type, user_id, limit: page.size, offset: page.offset() };
    Ok(app.services.db.run(query).await?)
}

pub async fn list(app: &App) -> Result<Vec<RoleRecord>, FlowError> {
    Ok(app.services.db.run(roles::List).await?)
}
