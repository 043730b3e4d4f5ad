//! `/api/v1/auth/password/*`: asking for a password-reset link, and the reset (for apps; the
//! hosted pages are [`super::account_pages`]).

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use crate::app::App;
use crate::flows::password_reset::{self, ForgotInput};
use crate::http::{ApiError, Request, Response, response};

/// What `forgot` answers, whatever the address: it says nothing of whether an account has it.
pub const FORGOT_DETAIL: &str = "if an account has this address, a link to reset its password is on its way";

/// The request's body as JSON, or as a form when it says so.
async fn forgot_input(req: &mut Request) -> Result<ForgotInput, ApiError> {
    let form = req.header(CONTENT_TYPE).is_some_and(|t| {
        t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if form { req.form().await } else { req.json().await }
}

/// `POST /api/v1/auth/password/forgot`: 202 at once, the same for every address.
pub async fn forgot(app: &App, mut req: Request) -> Result<Response, ApiError> {
    password_reset::forgot(app, forgot_input(&mut req).await?);
    Ok(accepted())
}

/// The one answer of `forgot`.
pub fn accepted() -> Response {
    let mut resp = response::json(StatusCode::ACCEPTED, &serde_json::json!({ "detail": FORGOT_DETAIL }));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /api/v1/auth/password/reset`: 204 once the password is replaced and every session
/// ended.
pub async fn reset(app: &App, mut req: Request) -> Result<Response, ApiError> {
    let input = req.json().await?;
    password_reset::reset(app, input, &req.peer()).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}
