//! The caller's own account: profile update, login history, sessions; and user deletion by an
//! admin.

use auth_actors::db::history::HistoryRow;
use auth_actors::db::sessions::SessionRow;
use auth_actors::db::users::{PasswordChange, ProfileOutcome, UserRecord};
use serde::Deserialize;
use uuid::Uuid;

use super::Client;
use super::authenticate::Principal;
use super::logout;
use super::signup::{validate_password, validate_username};
use crate::app::App;
use crate::http::ApiError;
use crate::passwords::Verified;

/// `page` ≥ 1 and `size` 1–100 (422 otherwise), from the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: i64,
    pub size: i64,
}

impl Page {
    pub fn parse(page: Option<String>, size: Option<String>, default_size: i64) -> Result<Page, ApiError> {
        let number = |raw: Option<String>, name: &str, default: i64| -> Result<i64, ApiError> {
            match raw {
                None => Ok(default),
                Some(v) => {
                    v.trim().parse::<i64>().map_err(|_| ApiError::Unprocessable(format!("{name} must be an integer")))
                }
            }
        };
        let page = number(page, "page", 1)?;
        let size = number(size, "size", default_size)?;
        if page < 1 {
            return Err(ApiError::Unprocessable("page must be at least 1".into()));
        }
        if !(1..=100).contains(&size) {
            return Err(ApiError::Unprocessable("size must be between 1 and 100".into()));
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
    pub username: Option<String>,
    pub old_password: Option<String>,
    pub new_password: Option<String>,
}

/// Applies a profile change. A password change needs the right old password and revokes every
/// other session of the user. The old password is checked like a login's: through the account's
/// lockout gate and per-account limit (shared with the login), each failure recorded as a
/// `password_check_failed` event; while the account is locked even the right one is refused.
pub async fn update_profile(
    app: &App,
    principal: &Principal,
    input: ProfileUpdate,
    client: &Client,
) -> Result<UserRecord, ApiError> {
    let users = &app.services.users;
    let current = users
        .get_user(principal.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("user no longer exists".into()))?;
    if let Some(username) = &input.username {
        validate_username(username)?;
    }
    let password = match input.new_password {
        None => None,
        Some(new_password) => {
            let old = input
                .old_password
                .ok_or_else(|| ApiError::Unprocessable("old_password is required to change the password".into()))?;
            let username = input.username.as_deref().unwrap_or(&current.username);
            validate_password(&app.config.passwords, &new_password, username, &current.email)?;
            let verified_version = check_old_password(app, principal.user_id, old, client).await?;
            Some(PasswordChange { verified_version, new: app.hasher.hash(new_password).await? })
        }
    };
    let username = input.username.filter(|u| *u != current.username);
    if username.is_none() && password.is_none() {
        return Ok(current);
    }
    match users.update_profile(principal.user_id, username, password, Some(principal.session)).await? {
        ProfileOutcome::Updated { user, revoked } => {
            logout::fence_sessions(app, revoked).await?;
            Ok(user)
        }
        ProfileOutcome::Gone => Err(ApiError::Unauthorized("user no longer exists".into())),
        ProfileOutcome::PasswordChanged => {
            Err(ApiError::Conflict("the password was changed by another request; sign in again".into()))
        }
    }
}

/// Checks the caller's old password through the login gate; returns the password version it
/// matched, which the change then replaces only if it is still current.
async fn check_old_password(app: &App, user_id: Uuid, old: String, client: &Client) -> Result<i32, ApiError> {
    let account = user_id.to_string();
    super::login::gate(app, &account, Some(user_id), client).await?;
    let (stored, version) = app
        .services
        .users
        .password_hash(user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("user no longer exists".into()))?;
    if app.hasher.verify(old, Some(stored)).await? == Verified::No {
        let detail = serde_json::json!({});
        app.services
            .users
            .record_event("password_check_failed", Some(user_id), Some(user_id), client.ip_string(), detail)
            .await?;
        return Err(ApiError::Forbidden("old password is incorrect".into()));
    }
    if app.config.limits.enabled {
        app.services.limiter.login_succeeded(account).await?;
    }
    Ok(version)
}

/// Deletes a user (admin). Its sessions go with it and its access tokens are fenced off: by the
/// logout-all marker, by the markers of every session it had (a refresh that committed just
/// before the delete included), and by its standing, which every check now reads as gone.
pub async fn delete_user(app: &App, admin: &Principal, raw_id: &str) -> Result<(), ApiError> {
    let id: Uuid = raw_id.parse().map_err(|_| ApiError::NotFound("no such user".into()))?;
    logout::fence_access_tokens(app, id).await?;
    let Some(sessions) = app.services.users.delete_user(id, Some(admin.user_id)).await? else {
        return Err(ApiError::NotFound("no such user".into()));
    };
    logout::fence_sessions(app, sessions).await?;
    super::authenticate::standing_changed(app).await
}

pub async fn history(app: &App, principal: &Principal, page: Page) -> Result<(Vec<HistoryRow>, i64), ApiError> {
    Ok(app.services.users.history(principal.user_id, page.size, page.offset()).await?)
}

pub async fn sessions(app: &App, principal: &Principal) -> Result<Vec<SessionRow>, ApiError> {
    Ok(app.services.users.list_sessions(principal.user_id).await?)
}

pub async fn revoke_session(app: &App, principal: &Principal, raw_id: &str) -> Result<(), ApiError> {
    let id: Uuid = raw_id.parse().map_err(|_| ApiError::NotFound("no such session".into()))?;
    if !app.services.users.revoke_session(principal.user_id, id).await? {
        return Err(ApiError::NotFound("no such session".into()));
    }
    logout::fence_sessions(app, vec![id]).await
}
