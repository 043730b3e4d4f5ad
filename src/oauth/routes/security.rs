//! The account's security page, `/account/security`: the second factors of the signed-in user
//! (SPEC §9). It needs a browser session (the cookie of the browser flow); every form carries
//! the CSRF token of the account pages and is checked before anything is read or changed.
//!
//! - `GET /account/security`: the factors — whether an authenticator app is set up, the
//!   passkeys — and the forms that change them. `continue` (only ever a path of the
//!   authorization endpoint, `/oauth2/authorize?…`) is where an authorization request that needs
//!   a second factor sent a user who had none: every form carries it, and once a factor is set up
//!   the page links back there.
//! - `POST /account/security/totp`: a new TOTP secret, unconfirmed: the page shows its QR code
//!   (an SVG drawn on the server) and the key as text, and a form for the first code.
//! - `POST /account/security/totp/confirm`: the code turns it on; the ten recovery codes are
//!   shown once.
//! - `POST /account/security/totp/remove`: removes it, given the password or a current code.
//! - `POST /account/security/passkeys/start` (JSON, for the page script) and
//!   `POST /account/security/passkeys`: registers a passkey.
//! - `POST /account/security/passkeys/delete`: removes one, given the password.
//!
//! Without a session, the GET is a sign-in form of its own, `POST /account/security/sign-in`:
//! the password through `login::check_password` (the same limits, lockout and failure record as
//! every sign-in), then for an account with an authenticator app its code (`mfa::require`,
//! `mfa::attempt`, `totp::second_step`, the pending step's `mfa_token` in the form), then a
//! browser session (`authorize::open_session`, replacing any other) and back to this page. An
//! account with passkeys only signs in through an application's sign-in page, where the passkey
//! script runs. The other POSTs without a session are a 401 page, the script's start a JSON 401.

use askama::Template;
use auth_actors::db::mfa::GetFactors;
use auth_actors::db::sessions::BrowserSession;
use hyper::StatusCode;

use super::pages::{
    Failure, ceremony_reply, check_csrf, csrf_token_under, html, page_or_error, parameters, passkey_fields, redirect,
    script_error, session_set_cookie, set_cookies,
};
use crate::app::App;
use crate::flows::error::FlowError;
use crate::flows::login::{self, LoginInput};
use crate::flows::mfa::{self, StepKind};
use crate::flows::totp::CodeKind;
use crate::flows::{totp, webauthn};
use crate::http::{Request, Response};
use crate::oauth::authorize::{self, PageError};
use crate::oauth::protocol::OAuthForm;
use crate::pages::{render, stylesheet_path, webauthn_script_path};

/// Where these pages live, and so the path of their CSRF cookie without `COOKIE_SECURE`.
const PATH: &str = "/account";

/// The only place `continue` may lead: the authorization endpoint, on this service.
const AUTHORIZE: &str = "/oauth2/authorize?";

/// A passkey as the page lists it.
struct PasskeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityHtml<'a> {
    title: &'a str,
    username: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    continue_to: Option<&'a str>,
    totp: bool,
    passkeys: Vec<PasskeyRow>,
    fields: &'a [(&'a str, &'a str)],
    passkey_button: &'a str,
    passkey_mode: &'a str,
    passkey_start: &'a str,
    passkey_action: &'a str,
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct TotpSetupHtml<'a> {
    title: &'a str,
    qr_svg: &'a str,
    secret: &'a str,
    fields: &'a [(&'a str, &'a str)],
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesHtml<'a> {
    title: &'a str,
    codes: &'a [String],
    next: &'a str,
    continues: bool,
}

#[derive(Template)]
#[template(path = "security_sign_in.html")]
struct SecuritySignInHtml<'a> {
    title: &'a str,
    error: Option<&'a str>,
    second_step: bool,
    fields: &'a [(&'a str, &'a str)],
}

/// The security page's sign-in form (`mfa_token`: its second step), with an error.
fn sign_in_page(
    app: &App,
    req: &Request,
    form: &OAuthForm,
    mfa_token: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let (csrf, set) = csrf_token_under(app, req, PATH)?;
    let back = continue_to(form);
    let mut fields = vec![("csrf_token", csrf.as_str())];
    if let Some(back) = &back {
        fields.push(("continue", back));
    }
    if let Some(token) = mfa_token {
        fields.push(("mfa_token", token));
    }
    let page = SecuritySignInHtml { title: "Sign in", error, second_step: mfa_token.is_some(), fields: &fields };
    let mut resp = html(status, render(&page), None);
    set_cookies(&mut resp, &set.into_iter().collect::<Vec<_>>());
    Ok(resp)
}

/// `POST /account/security/sign-in`: the password, then (for an account with an authenticator
/// app) its code; a browser session, then back to the security page.
pub async fn sign_in(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = checked_form(app, &mut req).await?;
            let peer = req.peer();
            let checked = match form.get("mfa_token") {
                Some(token) => {
                    let kind = match form.get("method") {
                        Some("recovery_code") => CodeKind::RecoveryCode,
                        _ => CodeKind::Totp,
                    };
                    let step = match mfa::attempt(app, token, StepKind::Browser, &peer).await {
                        Ok(step) => step,
                        Err(e) => return sign_in_refused(app, &req, &form, e),
                    };
                    let code = form.get("code").unwrap_or_default();
                    match crate::flows::totp::second_step(app, step, kind, code, &peer).await {
                        Ok(checked) => checked,
                        Err(FlowError::InvalidMfaCode) => {
                            let error = Some("That code is not right. Check your authenticator app and try again.");
                            return sign_in_page(app, &req, &form, Some(token), error, StatusCode::BAD_REQUEST);
                        }
                        Err(e) => return sign_in_refused(app, &req, &form, e),
                    }
                }
                None => {
                    let input = LoginInput {
                        username: form.get("username").unwrap_or_default().to_string(),
                        password: form.get("password").unwrap_or_default().to_string(),
                    };
                    let checked = match login::check_password(app, input, &peer).await {
                        Ok(checked) => checked,
                        Err(e) => return sign_in_refused(app, &req, &form, e),
                    };
                    if checked.factors.totp {
                        let challenge = mfa::require(app, &checked, StepKind::Browser).await?;
                        return sign_in_page(app, &req, &form, Some(&challenge.mfa_token), None, StatusCode::OK);
                    }
                    if checked.factors.any() {
                        let error = Some(
                            "This account signs in with a passkey: sign in through an application, then open this page again.",
                        );
                        return sign_in_page(app, &req, &form, None, error, StatusCode::BAD_REQUEST);
                    }
                    checked
                }
            };
            let Some(new) = authorize::open_session(app, checked, &peer).await? else {
                return sign_in_refused(app, &req, &form, FlowError::BadCredentials);
            };
            if let Some(old) = session {
                crate::oauth::openid::sign_out(app, &old).await?;
            }
            let target = match continue_to(&form) {
                Some(back) => {
                    format!("/account/security?{}", serde_urlencoded::to_string([("continue", &back)]).unwrap_or_default())
                }
                None => "/account/security".to_string(),
            };
            let mut resp = redirect(&target, true);
            set_cookies(&mut resp, &[session_set_cookie(app, &new.cookie, app.config.oauth.browser_session_ttl)]);
            Ok(resp)
        }
        .await,
    )
}

/// A refused sign-in on the security page: the form again with the reason, or a failure of the
/// service.
fn sign_in_refused(app: &App, req: &Request, form: &OAuthForm, e: FlowError) -> Result<Response, Failure> {
    let (error, status) = match e {
        FlowError::BadCredentials => ("Wrong username or password.".to_string(), StatusCode::BAD_REQUEST),
        FlowError::InvalidMfaToken => (
            "Your sign-in took too long or had too many attempts. Please sign in again.".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        FlowError::EmailUnverified => (
            "Your email address is not verified yet. Check your inbox for the link.".to_string(),
            StatusCode::FORBIDDEN,
        ),
        FlowError::Throttled { retry_after } => (
            format!("Too many attempts. Try again in {} seconds.", retry_after.as_secs_f64().ceil().max(1.0) as u64),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        e => return Err(e.into()),
    };
    sign_in_page(app, req, form, None, Some(&error), status)
}

/// `continue`, if it is a path of the authorization endpoint (never another site, never
/// another page: it only ever leads back into a sign-in).
fn continue_to(form: &OAuthForm) -> Option<String> {
    form.get("continue").filter(|c| c.starts_with(AUTHORIZE) && c.len() <= 8192).map(str::to_string)
}

fn day(t: time::OffsetDateTime) -> String {
    let d = t.date();
    format!("{}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The security page of `session`'s user, with a notice or an error of the last form.
async fn security_page(
    app: &App,
    req: &Request,
    session: &BrowserSession,
    form: &OAuthForm,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let user = &session.user;
    let factors = app.services.db.run(GetFactors { user_id: user.id }).await.map_err(FlowError::from)?;
    let passkeys = if factors.webauthn { webauthn::list(app, user.id).await? } else { Vec::new() };
    let passkeys = passkeys
        .into_iter()
        .map(|k| PasskeyRow {
            id: k.id.to_string(),
            name: k.name,
            created: day(k.created_at),
            last_used: k.last_used_at.map(day).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let (csrf, set) = csrf_token_under(app, req, PATH)?;
    let back = continue_to(form);
    let mut fields = vec![("csrf_token", csrf.as_str())];
    if let Some(back) = &back {
        fields.push(("continue", back));
    }
    let page = SecurityHtml {
        title: "Sign-in security",
        username: &user.username,
        notice,
        error,
        continue_to: back.as_deref(),
        totp: factors.totp,
        passkeys,
        fields: &fields,
        passkey_button: "Add a passkey",
        passkey_mode: "create",
        passkey_start: "/account/security/passkeys/start",
        passkey_action: "/account/security/passkeys",
    };
    let mut resp = html(status, render(&page), None);
    set_cookies(&mut resp, &set.into_iter().collect::<Vec<_>>());
    Ok(resp)
}

/// What a request without a browser session gets: the page that says to sign in (401).
fn signed_out() -> Result<Response, Failure> {
    let message =
        "You are not signed in here. Sign in through an application of this service, then open this page again";
    Ok(html(StatusCode::UNAUTHORIZED, crate::pages::error("Sign in first", message), None))
}

/// The form of a POST, checked: its CSRF token, and the session it needs.
async fn checked_form(app: &App, req: &mut Request) -> Result<OAuthForm, Failure> {
    let form = parameters(req).await?;
    check_csrf(app, req, &form)?;
    Ok(form)
}

/// `GET /account/security`.
pub async fn page(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = parameters(&mut req).await?;
            let Some(session) = session else {
                return sign_in_page(app, &req, &form, None, None, StatusCode::OK);
            };
            security_page(app, &req, &session, &form, None, None, StatusCode::OK).await
        }
        .await,
    )
}

/// `POST /account/security/totp`: starts setting up an authenticator app.
pub async fn totp_start(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = checked_form(app, &mut req).await?;
            let Some(session) = session else { return signed_out() };
            let enrolment = totp::enrol(app, &session.user).await?;
            let qr = totp::qr_svg(&enrolment.otpauth_uri);
            let (csrf, _) = csrf_token_under(app, &req, PATH)?;
            let back = continue_to(&form);
            let mut fields = vec![("csrf_token", csrf.as_str())];
            if let Some(back) = &back {
                fields.push(("continue", back));
            }
            let page = TotpSetupHtml {
                title: "Set up an authenticator app",
                qr_svg: &qr,
                secret: &enrolment.secret,
                fields: &fields,
            };
            Ok(html(StatusCode::OK, render(&page), None))
        }
        .await,
    )
}

/// `POST /account/security/totp/confirm`: the first code turns the app on; the recovery codes
/// are shown once.
pub async fn totp_confirm(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = checked_form(app, &mut req).await?;
            let Some(session) = session else { return signed_out() };
            let code = form.get("code").unwrap_or_default();
            match totp::confirm(app, session.user.id, code, &req.peer()).await {
                Ok(codes) => {
                    let back = continue_to(&form);
                    let next = back.clone().unwrap_or_else(|| "/account/security".into());
                    let page = RecoveryCodesHtml {
                        title: "Save your recovery codes",
                        codes: &codes,
                        next: &next,
                        continues: back.is_some(),
                    };
                    Ok(html(StatusCode::OK, render(&page), None))
                }
                Err(
                    FlowError::Field(_) | FlowError::MfaState(_) | FlowError::InvalidValue | FlowError::NotFound(_),
                ) => {
                    let error = "That code was not right, or the setup expired. Set up the app again.";
                    security_page(app, &req, &session, &form, None, Some(error), StatusCode::BAD_REQUEST).await
                }
                Err(e) => Err(e.into()),
            }
        }
        .await,
    )
}

/// `POST /account/security/totp/remove`: removes the app, given the password or a code.
pub async fn totp_remove(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = checked_form(app, &mut req).await?;
            let Some(session) = session else { return signed_out() };
            let proof = match (form.get("password"), form.get("code")) {
                (Some(p), _) => totp::Proof::Password(p.to_string()),
                (None, Some(c)) => totp::Proof::Code(c.to_string()),
                (None, None) => {
                    let error = "Enter your password or a code from the app.";
                    return security_page(app, &req, &session, &form, None, Some(error), StatusCode::BAD_REQUEST).await;
                }
            };
            match totp::remove(app, session.user.id, proof, &req.peer()).await {
                Ok(()) => {
                    let notice = Some("The authenticator app is removed.");
                    security_page(app, &req, &session, &form, notice, None, StatusCode::OK).await
                }
                Err(FlowError::WrongPassword | FlowError::BadCredentials | FlowError::InvalidMfaCode) => {
                    let error = "That password or code is not right.";
                    security_page(app, &req, &session, &form, None, Some(error), StatusCode::BAD_REQUEST).await
                }
                Err(e) => Err(e.into()),
            }
        }
        .await,
    )
}

/// `POST /account/security/passkeys/start`: the options of a passkey registration, for the page
/// script (JSON).
pub async fn passkey_start(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    let Ok(form) = parameters(&mut req).await else {
        return script_error(StatusCode::BAD_REQUEST, "invalid_request", "expected the page's form fields");
    };
    if check_csrf(app, &req, &form).is_err() {
        return script_error(StatusCode::FORBIDDEN, "invalid_csrf_token", "this page has expired; reload it");
    }
    let Some(session) = session else {
        return script_error(StatusCode::UNAUTHORIZED, "login_required", "you are not signed in");
    };
    ceremony_reply(webauthn::register_start(app, &session.user).await)
}

/// `POST /account/security/passkeys`: the browser's new credential (the page script submits it).
pub async fn passkey_finish(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = checked_form(app, &mut req).await?;
            let Some(session) = session else { return signed_out() };
            let (ceremony, credential) = passkey_fields(&form)?;
            let name = form.get("name").map(|n| n.chars().take(64).collect::<String>());
            let peer = req.peer();
            match webauthn::register_finish(app, session.user.id, ceremony, &credential, name, &peer).await {
                Ok(_) => {
                    let notice = Some("The passkey is added.");
                    security_page(app, &req, &session, &form, notice, None, StatusCode::OK).await
                }
                Err(
                    e @ (FlowError::Passkey(_) | FlowError::InvalidValue | FlowError::Field(_) | FlowError::Taken(_)),
                ) => {
                    let error = format!("The passkey was not added: {e}.");
                    security_page(app, &req, &session, &form, None, Some(&error), StatusCode::BAD_REQUEST).await
                }
                Err(e) => Err(e.into()),
            }
        }
        .await,
    )
}

/// `POST /account/security/passkeys/delete`: removes a passkey, given the password.
pub async fn passkey_delete(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = checked_form(app, &mut req).await?;
            let Some(session) = session else { return signed_out() };
            let id = form
                .get("id")
                .and_then(|i| uuid::Uuid::parse_str(i).ok())
                .ok_or_else(|| PageError::BadRequest("id must name one of your passkeys".into()))?;
            let password = form.get("password").unwrap_or_default().to_string();
            match webauthn::delete(app, session.user.id, id, password, &req.peer()).await {
                Ok(()) => {
                    let notice = Some("The passkey is removed.");
                    security_page(app, &req, &session, &form, notice, None, StatusCode::OK).await
                }
                Err(FlowError::WrongPassword | FlowError::BadCredentials) => {
                    let error = "That password is not right.";
                    security_page(app, &req, &session, &form, None, Some(error), StatusCode::BAD_REQUEST).await
                }
                Err(e) => Err(e.into()),
            }
        }
        .await,
    )
}
