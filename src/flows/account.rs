//! The caller's own account: profile update, login history, sessions; and user deletion by an
//! admin.

use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::db::history::{self, HistoryRow};
use auth_actors::db::roles;
use auth_actors::db::sessions::{self, SessionRow};
use auth_actors::db::users::{self, DeleteOutcome, PasswordChange, ProfileOutcome, UserRecord};
use auth_actors::keyspace::{Account, LimitClass};
use auth_actors::redis::lockout;
use serde::Deserialize;
use uuid::Uuid;

use super::authenticate::Principal;
use super::error::{Entity, FlowError};
use super::logout;
use crate::app::App;
use crate::domain::Peer;
use crate::domain::{FieldError, Password, Username};
use crate::passwords::Verified;

/// `page` ≥ 1 and `size` 1–100 (422 otherwise), from the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: i64,
    pub size: i64,
}

impl Page {
    pub fn parse(page: Option<String>, size: Option<String>, default_size: i64) -> Result<Page, FieldError> {
        let number = |raw: Option<String>, name: &'static str, default: i64| -> Result<i64, FieldError> {
            match raw {
                None => Ok(default),
                Some(v) => {
                    v.trim().parse::<i64>().map_err(|_| FieldError::new(name, format!("{name} must be an integer")))
                }
            }
        };
        let page = number(page, "page", 1)?;
        let size = number(size, "size", default_size)?;
        if page < 1 {
            return Err(FieldError::new("page", "page must be at least 1"));
        }
        if !(1..=100).contains(&size) {
            return Err(FieldError::new("size", "size must be between 1 and 100"));
        }
        Ok(Page { page, size })
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.size)
    }

    /// The `{items, total, page, size, pages}` envelope.
    pub fn envelope(&self, items: Vec<serde_json::Value>, total: i64) -> serde_json::Value {
        let pages = if total == 0 { 0 } else { (total + self.size - 1) / self.size };
        serde_json::json!({ "items": items, "total": total, "page": self.page, "size": self.size, "pages": pages })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    pub username: Option<Username>,
    pub old_password: Option<String>,
    pub new_password: Option<String>,
}

/// Applies a profile change. A password change needs the right old password and revokes every
/// other session of the user. The old password is checked like a login's: through the account's
/// lockout gate and per-account limit (shared with the login), each failure recorded as a
/// `password_check_failed` event; while the account is locked even the right one is refused.
///
/// A new username is taken or refused (409) as at signup, so a rename tells whether a name
/// exists just as a signup does: it spends the client's `signup` budget (`RATE_LIMIT_SIGNUP`)
/// as well as its route's, before any name or password is looked at, so the two routes
/// together answer no more such questions than signup alone. The limit is counted here rather
/// than by putting the route in the `signup` class, because only the rename is a probe: a
/// password change keeps the default class and does not spend the signups of its address.
pub async fn update_profile(
    app: &App,
    principal: &Principal,
    input: ProfileUpdate,
    peer: &Peer,
) -> Result<UserRecord, FlowError> {
    let db = &app.services.db;
    let current = db.run(users::Get { id: principal.user_id }).await?.ok_or(FlowError::UserGone)?;
    let username = input.username.map(Username::into_inner).filter(|u| *u != current.username);
    if username.is_some() {
        super::limits::spend(app, LimitClass::Signup, peer.ip).await?;
    }
    let password = match input.new_password {
        None => None,
        Some(new_password) => {
            let old = input
                .old_password
                .ok_or_else(|| FieldError::new("old_password", "old_password is required to change the password"))?;
            let policy = (&app.config.passwords).into();
            let new_password =
                Password::new(policy, new_password, username.as_deref().unwrap_or(&current.username), &current.email)?;
            let verified_version = check_old_password(app, principal.user_id, old, peer).await?;
            // After the old password, so that a caller who does not know it causes no request.
            crate::passwords::breach::check(app.breach_api.as_ref(), &app.metrics, &new_password).await?;
            Some(PasswordChange { verified_version, new: app.hasher.hash(new_password.into_inner()).await? })
        }
    };
    if username.is_none() && password.is_none() {
        return Ok(current);
    }
    let update =
        users::UpdateProfile { id: principal.user_id, username, password, keep_family: Some(principal.session) };
    match db.run(update).await? {
        ProfileOutcome::Updated { user, revoked, .. } => {
            logout::fence_sessions(app, user.id, revoked).await?;
            Ok(user)
        }
        ProfileOutcome::Gone => Err(FlowError::UserGone),
        ProfileOutcome::PasswordChanged => Err(FlowError::PasswordChangedMeanwhile),
    }
}

/// Checks the caller's old password (or the password an email change asks for) through the
/// login gate; returns the password version it matched, which the change then replaces only if
/// it is still current.
pub(crate) async fn check_old_password(app: &App, user_id: Uuid, old: String, peer: &Peer) -> Result<i32, FlowError> {
    let account = Account::User(user_id);
    super::limits::gate(app, &account, peer).await?;
    let db = &app.services.db;
    let (stored, version) = db.run(users::PasswordHash { id: user_id }).await?.ok_or(FlowError::UserGone)?;
    if app.hasher.verify(old, Some(stored)).await? == Verified::No {
        let event = SecurityEvent::PasswordCheckFailed { user: user_id };
        db.run(events::Record { event, ip: peer.ip_string() }).await?;
        return Err(FlowError::WrongPassword);
    }
    if app.config.limits.enabled {
        app.services.redis.run(lockout::LoginSucceeded { account }).await?;
    }
    Ok(version)
}

/// Deletes a user (admin). Its sessions go with it and its access tokens are fenced off: by the
/// logout-all marker, by the markers of every session it had (a refresh that committed just
/// before the delete included), and by its standing, which every check now reads as gone.
///
/// The last active admin is never deleted. That is asked before the fence, so that a refused
/// deletion leaves the admin signed in; the deletion asks again under the admin role's lock,
/// and only an admin removed meanwhile by a concurrent request can make it refuse after the
/// fence (the account then stays, signed out).
pub async fn delete_user(app: &App, admin: &Principal, raw_id: &str) -> Result<(), FlowError> {
    let id: Uuid = raw_id.parse().map_err(|_| FlowError::NotFound(Entity::User))?;
    if app.services.db.run(roles::IsLastAdmin { user_id: id }).await? {
        return Err(FlowError::LastAdmin);
    }
    logout::fence_access_tokens(app, id).await?;
    match app.services.db.run(users::Delete { id, actor: Some(admin.user_id) }).await? {
        DeleteOutcome::Deleted(sessions) => logout::fence_sessions(app, id, sessions).await,
        DeleteOutcome::NoSuchUser => Err(FlowError::NotFound(Entity::User)),
        DeleteOutcome::LastAdmin => Err(FlowError::LastAdmin),
    }
}

pub async fn history(app: &App, principal: &Principal, page: Page) -> Result<(Vec<HistoryRow>, i64), FlowError> {
    let query = history::Page { user_id: principal.user_id, limit: page.size, offset: page.offset() };
    Ok(app.services.db.run(query).await?)
}

pub async fn sessions(app: &App, principal: &Principal) -> Result<Vec<SessionRow>, FlowError> {
    Ok(app.services.db.run(sessions::List { user_id: principal.user_id }).await?)
}

pub async fn revoke_session(app: &App, principal: &Principal, raw_id: &str) -> Result<(), FlowError> {
    let id: Uuid = raw_id.parse().map_err(|_| FlowError::NotFound(Entity::Session))?;
    let revoke = sessions::RevokeOne { user_id: principal.user_id, family_id: id };
    if !app.services.db.run(revoke).await? {
        return Err(FlowError::NotFound(Entity::Session));
    }
    logout::fence_sessions(app, principal.user_id, vec![id]).await
}
