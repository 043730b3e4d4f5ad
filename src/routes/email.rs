//! `/api/v1/auth/email/*` and `/api/v1/users/{verify-email,email}/*`: the account's address for
//! apps (the mailed links open the hosted pages of `crate::oauth::routes::account`).

use hyper::StatusCode;

use crate::app::App;
use crate::flows::authenticate::Principal;
use crate::flows::email::{self, TokenInput};
use crate::http::{ApiError, Request, Response, response};

/// `POST /api/v1/auth/email/verify` `{token}` → 204.
pub async fn verify(app: &App, mut req: Request) -> Result<Response, ApiError> {
    let input: TokenInput = req.json().await?;
    email::verify(app, &input.token).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `POST /api/v1/users/verify-email/resend` → 202, whether or not a mail was due.
pub async fn resend(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    email::resend(app, &principal).await?;
    Ok(response::empty(StatusCode::ACCEPTED))
}

/// `POST /api/v1/users/email/change` `{new_email, password}` → 202.
pub async fn change(app: &App, mut req: Request, principal: Principal) -> Result<Response, ApiError> {
    let peer = req.peer();
    email::request_change(app, &principal, req.json().await?, &peer).await?;
    Ok(response::empty(StatusCode::ACCEPTED))
}

/// `POST /api/v1/auth/email/change/confirm` `{token}` → 204.
pub async fn confirm_change(app: &App, mut req: Request) -> Result<Response, ApiError> {
    let input: TokenInput = req.json().await?;
    email::confirm_change(app, &input.token).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}
