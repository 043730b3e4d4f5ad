//! Signup: validate → hash (bounded, off the runtime) → store. Also the field rules that
//! profile updates reuse.

use auth_actors::db::users::UserRecord;
use serde::Deserialize;

use crate::app::App;
use crate::config::PasswordConfig;
use crate::http::ApiError;

#[derive(Debug, Deserialize)]
pub struct SignupInput {
    pub username: String,
    pub email: String,
    pub password: String,
}

/// 3–64 characters of `[A-Za-z0-9_.-]`.
pub fn validate_username(username: &str) -> Result<(), ApiError> {
    let ok_chars = username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(3..=64).contains(&username.len()) || !ok_chars {
        return Err(ApiError::Unprocessable("username must be 3-64 characters of letters, digits, _ . -".into()));
    }
    Ok(())
}

/// A pragmatic address check: one `@`, a non-empty local part, a dotted domain, no spaces or
/// control characters, at most 254 characters.
pub fn validate_email(email: &str) -> Result<(), ApiError> {
    let invalid = || ApiError::Unprocessable("email is not a valid address".into());
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain.contains('.') || !labels_ok {
        return Err(invalid());
    }
    Ok(())
}

/// The password policy (§5): length bounds, and not the username or email.
pub fn validate_password(policy: &PasswordConfig, password: &str, username: &str, email: &str) -> Result<(), ApiError> {
    let len = password.chars().count();
    if len < policy.min_length {
        return Err(ApiError::Unprocessable(format!("password must be at least {} characters", policy.min_length)));
    }
    if len > policy.max_length {
        return Err(ApiError::Unprocessable(format!("password must be at most {} characters", policy.max_length)));
    }
    if password.eq_ignore_ascii_case(username) || password.eq_ignore_ascii_case(email) {
        return Err(ApiError::Unprocessable("password must not equal the username or email".into()));
    }
    Ok(())
}

pub async fn signup(app: &App, input: SignupInput) -> Result<UserRecord, ApiError> {
    let SignupInput { username, email, password } = input;
    let email = email.trim().to_string();
    validate_username(&username)?;
    validate_email(&email)?;
    validate_password(&app.config.passwords, &password, &username, &email)?;
    let hash = app.hasher.hash(password).await?;
    Ok(app.services.users.create_user(username, email, hash).await?)
}
