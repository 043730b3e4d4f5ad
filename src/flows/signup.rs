//! Signup: validate (the bundled password list included) → range API → hash (bounded, off the
//! runtime) → store, with the verification mail in the same transaction (see [`super::email`]).

use auth_actors::db::users::{self, UserRecord};
use serde::Deserialize;

use super::error::FlowError;
use crate::app::App;
use crate::domain::{Email, Password, Username};

/// The username and email are checked as they are parsed; the password needs both.
#[derive(Debug, Deserialize)]
pub struct SignupInput {
    pub username: Username,
    pub email: Email,
    pub password: String,
}

pub async fn signup(app: &App, input: SignupInput) -> Result<UserRecord, FlowError> {
    let SignupInput { username, email, password } = input;
    let policy = (&app.config.passwords).into();
    let password = Password::new(policy, password, username.as_str(), email.as_str())?;
    crate::passwords::breach::check(app.breach_api.as_ref(), &app.metrics, &password).await?;
    let password_hash = app.hasher.hash(password.into_inner()).await?;
    let create = users::Create { username: username.into_inner(), email: email.into_inner(), password_hash };
    super::email::create_with_verification(app, create).await
}
