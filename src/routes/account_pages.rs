//! The hosted account pages (`/account/*`): creating an account, asking for a password-reset
//! link, and the page a reset link opens. They look like the sign-in page and carry its protections (the same
//! template base and stylesheet, the same headers, a CSRF token in every form checked against
//! the CSRF cookie before anything is read or changed; see [`crate::oauth::routes::pages`]).
//!
//! A GET of the reset page never spends its token (mail scanners fetch links): it only shows
//! the form when the link is live; the POST spends it. Every refused link shows one error page
//! (400), whatever the reason.

use askama::Template;
use hyper::StatusCode;
use serde::Deserialize;

use crate::app::App;
use crate::domain::{Email, Username};
use crate::flows::error::FlowError;
use crate::flows::password_reset::{self, ForgotInput, ResetInput};
use crate::flows::signup::{self, SignupInput};
use crate::http::{Request, Response};
use crate::oauth::routes::pages::{
    account_page, bad_csrf_response, csrf_matches, csrf_token_under, error_response, flow_error_response,
};
use crate::pages::{render, stylesheet_path};
use auth_actors::db::sessions::BrowserSession;

/// Where the CSRF cookie of these pages is scoped without `COOKIE_SECURE`.
const PATH: &str = "/account";

#[derive(Template)]
#[template(path = "forgot_password.html")]
struct ForgotHtml<'a> {
    title: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    fields: &'a [(&'a str, &'a str)],
}

#[derive(Template)]
#[template(path = "reset_password.html")]
struct ResetHtml<'a> {
    title: &'a str,
    error: Option<&'a str>,
    fields: &'a [(&'a str, &'a str)],
}

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUpHtml<'a> {
    title: &'a str,
    username: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    fields: &'a [(&'a str, &'a str)],
}

fn notice(title: &str, message: &str) -> Response {
    account_page(StatusCode::OK, crate::pages::account_done(title, message), &[])
}

/// The forgot-password form, with `email` and `error` of a refused attempt.
fn forgot_form(app: &App, req: &Request, status: StatusCode, email: &str, error: Option<&str>) -> Response {
    let (token, set) = match csrf_token_under(app, req, PATH) {
        Ok(t) => t,
        Err(e) => return flow_error_response(e),
    };
    let fields = [("csrf_token", token.as_str())];
    let page = ForgotHtml { title: "Forgot your password?", email, error, fields: &fields };
    account_page(status, render(&page), &set.into_iter().collect::<Vec<_>>())
}

/// The new-password form of a live link.
fn reset_form(app: &App, req: &Request, status: StatusCode, link: &str, error: Option<&str>) -> Response {
    let (token, set) = match csrf_token_under(app, req, PATH) {
        Ok(t) => t,
        Err(e) => return flow_error_response(e),
    };
    let fields = [("token", link), ("csrf_token", token.as_str())];
    let page = ResetHtml { title: "Choose a new password", error, fields: &fields };
    account_page(status, render(&page), &set.into_iter().collect::<Vec<_>>())
}

/// `GET /account/forgot-password`.
pub async fn forgot_page(app: &App, req: Request, _session: Option<BrowserSession>) -> Response {
    forgot_form(app, &req, StatusCode::OK, "", None)
}

#[derive(Deserialize)]
struct ForgotForm {
    csrf_token: Option<String>,
    email: Option<String>,
}

/// `POST /account/forgot-password`: the same page for every address (after the CSRF check
/// and the address's own syntax).
pub async fn forgot_submit(app: &App, mut req: Request, _session: Option<BrowserSession>) -> Response {
    let form: ForgotForm = match req.form().await {
        Ok(f) => f,
        Err(e) => return error_response(e),
    };
    if !csrf_matches(app, &req, form.csrf_token.as_deref()) {
        return bad_csrf_response();
    }
    let raw = form.email.unwrap_or_default();
    let email = match Email::parse(raw.clone()) {
        Ok(e) => e,
        Err(e) => return forgot_form(app, &req, StatusCode::UNPROCESSABLE_ENTITY, &raw, Some(&e.to_string())),
    };
    password_reset::forgot(app, ForgotInput { email });
    notice(
        "Check your mail",
        "If an account has this address, a link to choose a new password is on its way. It works once, for a limited time.",
    )
}

/// `GET /account/reset-password?token=…`: the form when the link is live; never spends it.
pub async fn reset_page(app: &App, req: Request, _session: Option<BrowserSession>) -> Response {
    let token = match req.query_param("token") {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return error_response(e),
    };
    match password_reset::holder(app, &token).await {
        Ok(_) => reset_form(app, &req, StatusCode::OK, &token, None),
        Err(e) => flow_error_response(e),
    }
}

#[derive(Deserialize)]
struct ResetForm {
    csrf_token: Option<String>,
    token: Option<String>,
    new_password: Option<String>,
}

/// `POST /account/reset-password`: spends the link and replaces the password.
pub async fn reset_submit(app: &App, mut req: Request, _session: Option<BrowserSession>) -> Response {
    let form: ResetForm = match req.form().await {
        Ok(f) => f,
        Err(e) => return error_response(e),
    };
    if !csrf_matches(app, &req, form.csrf_token.as_deref()) {
        return bad_csrf_response();
    }
    let token = form.token.unwrap_or_default();
    let input = ResetInput { token: token.clone(), new_password: form.new_password.unwrap_or_default() };
    match password_reset::reset(app, input, &req.peer()).await {
        Ok(()) => notice(
            "Password changed",
            "Your password was changed and every session was signed out. Sign in with the new password.",
        ),
        Err(FlowError::Field(e)) => {
            reset_form(app, &req, StatusCode::UNPROCESSABLE_ENTITY, &token, Some(&e.to_string()))
        }
        Err(e) => flow_error_response(e),
    }
}

/// The sign-up form, with what a refused attempt entered (never the password) and its error.
fn sign_up_form(app: &App, req: &Request, status: StatusCode, entered: (&str, &str), error: Option<&str>) -> Response {
    let (token, set) = match csrf_token_under(app, req, PATH) {
        Ok(t) => t,
        Err(e) => return flow_error_response(e),
    };
    let fields = [("csrf_token", token.as_str())];
    let (username, email) = entered;
    let page = SignUpHtml { title: "Create an account", username, email, error, fields: &fields };
    account_page(status, render(&page), &set.into_iter().collect::<Vec<_>>())
}

/// `GET /account/sign-up`.
pub async fn sign_up_page(app: &App, req: Request, _session: Option<BrowserSession>) -> Response {
    sign_up_form(app, &req, StatusCode::OK, ("", ""), None)
}

#[derive(Deserialize)]
struct SignUpForm {
    csrf_token: Option<String>,
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

/// `POST /account/sign-up`: the signup of `POST /api/v1/users/signup` (the same checks, the
/// same password policy, the same verification mail), as a form. A taken name or address is
/// said as the API says it (409): signup cannot avoid telling it.
pub async fn sign_up_submit(app: &App, mut req: Request, _session: Option<BrowserSession>) -> Response {
    let form: SignUpForm = match req.form().await {
        Ok(f) => f,
        Err(e) => return error_response(e),
    };
    if !csrf_matches(app, &req, form.csrf_token.as_deref()) {
        return bad_csrf_response();
    }
    let raw_username = form.username.unwrap_or_default();
    let raw_email = form.email.unwrap_or_default();
    let entered = (raw_username.as_str(), raw_email.as_str());
    let refused = |status, message: String| sign_up_form(app, &req, status, entered, Some(&message));
    let parsed = Username::parse(raw_username.clone()).and_then(|u| Ok((u, Email::parse(raw_email.clone())?)));
    let (username, email) = match parsed {
        Ok(p) => p,
        Err(e) => return refused(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let input = SignupInput { username, email, password: form.password.unwrap_or_default() };
    match signup::signup(app, input).await {
        Ok(user) => notice(
            "Check your mail",
            &format!(
                "The account {} was created. Follow the link mailed to {} to confirm the address.",
                user.username, user.email
            ),
        ),
        Err(FlowError::Field(e)) => refused(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e @ FlowError::Taken(_)) => refused(StatusCode::CONFLICT, e.to_string()),
        Err(e) => flow_error_response(e),
    }
}
