//! The hosted pages of the browser flow (`/oauth2/authorize`, `/oauth2/consent`,
//! `/oauth2/logout`), OpenID Connect userinfo, and the consents a user has given. The flow is
//! [`crate::oauth::authorize`]; this module holds what is HTTP about it:
//!
//! - The browser session is the cookie `__Host-session` (`session` with `COOKIE_SECURE=false`):
//!   `HttpOnly`, `Secure`, `SameSite=Lax` (so that it reaches the authorization endpoint when a
//!   client sends the browser there), a 256-bit secret of which only the SHA-256 is stored. A
//!   sign-in always issues a new one (no session fixation) and ends the one it replaces.
//! - Every form carries a CSRF token equal to the cookie `__Host-csrf` (double submit; the
//!   `__Host-` prefix keeps a sibling subdomain from planting it). A POST without both, or with
//!   two that differ, is refused (403) before anything else is read or changed.
//! - Every page and redirect forbids framing (`frame-ancestors 'none'`, `X-Frame-Options`),
//!   caching and referrers, and lets its forms go only to this service and to the one redirect
//!   URI the request was checked against (`form-action`, which browsers apply to the redirect
//!   that follows a form). Scripts and requests from a page may come only from this service
//!   (`script-src 'self'`, `connect-src 'self'`, everything else `default-src 'none'`): the one
//!   script is the passkey script under its hashed name (no inline script, no other origin).
//! - A sign-in of an account with a second factor opens no session: the password leaves a
//!   pending step (`flows::mfa::require`), whose `mfa_token` the second-factor page's forms carry
//!   as a hidden field. `POST /oauth2/authorize/mfa` checks a TOTP or recovery code,
//!   `POST /oauth2/authorize/passkey/start` answers a passkey ceremony's options (JSON, for the
//!   page script) and `POST /oauth2/authorize/passkey` its assertion (as the second factor, or
//!   passwordless without an `mfa_token`). All three are CSRF-checked like every form; a right
//!   factor opens the browser session with the `amr` it reached.
//! - Every failure on these routes is an HTML page with a 4xx (or 503) status, never a redirect
//!   to an address that was not checked.

use std::time::Duration;

use hyper::header::{CACHE_CONTROL, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Method, StatusCode};

use crate::app::App;
use auth_actors::db::sessions::BrowserSession;

use crate::flows::authenticate::Principal;
use crate::flows::error::FlowError;
use crate::flows::totp::CodeKind;
use crate::http::{ApiError, Request, Response, response};
use crate::oauth::authorize::{self, Checked, PageError, Registration, SecondFactorError, SignInError, Step};

/// The account's security page (second factors), where a request that needs one sends a user
/// who has none.
pub const SECURITY_PAGE: &str = "/account/security";
use crate::flows::mfa::StepKind;
use crate::oauth::openid;
use crate::oauth::protocol::{OAuthError, OAuthForm};
use crate::pages;
use crate::secret::Secret;

/// Why a page request failed: a page error of the flow, or one of the HTTP layer (a body that is
/// not a form, too large, ...). Both are shown as pages.
pub(super) enum Failure {
    Page(PageError),
    Api(ApiError),
}

impl From<PageError> for Failure {
    fn from(e: PageError) -> Self {
        Failure::Page(e)
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<FlowError> for Failure {
    fn from(e: FlowError) -> Self {
        Failure::Page(PageError::Flow(e))
    }
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Failure::Page(PageError::BadRequest(e.to_string()))
    }
}

fn session_cookie_name(app: &App) -> &'static str {
    if app.config.http.cookie_secure { "__Host-session" } else { "session" }
}

fn csrf_cookie_name(app: &App) -> &'static str {
    if app.config.http.cookie_secure { "__Host-csrf" } else { "csrf" }
}

/// A `Set-Cookie` value for the hosted pages under `insecure_path` (`max_age` `None`: until the
/// browser closes): a `__Host-` cookie must have the path `/`, and without that prefix
/// (`COOKIE_SECURE=false`) the cookie is kept to the pages that read it.
pub(crate) fn cookie_at(app: &App, insecure_path: &str, name: &str, value: &str, max_age: Option<Duration>) -> String {
    let (path, secure) = if app.config.http.cookie_secure { ("/", "; Secure") } else { (insecure_path, "") };
    let max_age = max_age.map(|d| format!("; Max-Age={}", d.as_secs())).unwrap_or_default();
    format!("{name}={value}; HttpOnly; SameSite=Lax; Path={path}{max_age}{secure}")
}

/// The browser session's `Set-Cookie` (`max_age` zero: its removal). It is read by the browser
/// flow and by the account pages (`/account/security`), so without `COOKIE_SECURE` its path is `/`.
pub(super) fn session_set_cookie(app: &App, value: &str, max_age: Duration) -> String {
    cookie_at(app, "/", session_cookie_name(app), value, Some(max_age))
}

/// The browser's session secret, as its cookie carries it.
pub fn session_cookie(app: &App, req: &Request) -> Option<String> {
    req.cookie(session_cookie_name(app)).filter(|c| !c.is_empty())
}

/// The origin a CSP `form-action` needs for a redirect to `uri`: `scheme://host[:port]`, or the
/// bare `scheme:` of a private-use URI. `None` if it has characters a policy cannot hold.
fn csp_source(uri: &str) -> Option<String> {
    let source = match uri.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("{scheme}://{authority}")
        }
        None => format!("{}:", uri.split(':').next()?),
    };
    let safe = source.bytes().all(|b| b.is_ascii_graphic() && !b";,'\"".contains(&b));
    safe.then_some(source)
}

/// The headers every page and redirect of the browser flow carries.
fn protect(resp: &mut Response, form_target: Option<&str>) {
    let form_action = match form_target.and_then(csp_source) {
        Some(source) => format!("'self' {source}"),
        None => "'self'".to_string(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; \
         form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert("content-security-policy", v);
    }
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(hyper::header::PRAGMA, HeaderValue::from_static("no-cache"));
}

pub(super) fn set_cookies(resp: &mut Response, cookies: &[String]) {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }
}

pub(super) fn html(status: StatusCode, body: String, form_target: Option<&str>) -> Response {
    let mut resp = response::with_body(status, "text/html; charset=utf-8", body.into());
    protect(&mut resp, form_target);
    resp
}

/// A redirect after a GET (302) or a form (303, so the browser follows it with a GET).
pub(super) fn redirect(uri: &str, after_form: bool) -> Response {
    let status = if after_form { StatusCode::SEE_OTHER } else { StatusCode::FOUND };
    let mut resp = response::empty(status);
    if let Ok(v) = HeaderValue::from_str(uri) {
        resp.headers_mut().insert(LOCATION, v);
    }
    protect(&mut resp, None);
    resp
}

/// The error page of a failure, with the status the same failure has everywhere else.
fn error_page(failure: Failure) -> Response {
    let (status, title, message, retry_after) = match failure {
        Failure::Page(PageError::Flow(flow)) => {
            let api = ApiError::from(flow);
            let retry = match &api {
                ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => Some(*retry_after),
                _ => None,
            };
            let message = match api.status() {
                s if s.is_server_error() => "The service cannot answer right now. Please try again in a moment.".into(),
                _ => api.to_string(),
            };
            (api.status(), "Something went wrong", message, retry)
        }
        Failure::Page(e @ PageError::BadCsrf) => (StatusCode::FORBIDDEN, "This form has expired", e.to_string(), None),
        Failure::Page(e) => (StatusCode::BAD_REQUEST, "This request cannot be completed", e.to_string(), None),
        Failure::Api(api) => {
            let retry = match &api {
                ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => Some(*retry_after),
                _ => None,
            };
            (api.status(), "This request cannot be completed", api.to_string(), retry)
        }
    };
    let mut resp = html(status, pages::error(title, &message), None);
    if let Some(r) = retry_after {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, (r.as_secs_f64().ceil().max(1.0) as u64).into());
    }
    resp
}

/// An error of the HTTP layer (a rate limit, an outage) on a hosted page's route, as a page.
pub fn error_response(e: ApiError) -> Response {
    error_page(Failure::Api(e))
}

/// A page of the account pages (`crate::routes::account_pages`), with the same protections as
/// the browser flow's (forms only to this service), and the cookies to set.
pub(crate) fn account_page(status: StatusCode, body: String, cookies: &[String]) -> Response {
    let mut resp = html(status, body, None);
    set_cookies(&mut resp, cookies);
    resp
}

/// A flow's failure on a hosted page, as the page the browser flow shows for it.
pub(crate) fn flow_error_response(e: FlowError) -> Response {
    error_page(Failure::from(e))
}

/// The page of a form whose CSRF token is missing or wrong (403).
pub(crate) fn bad_csrf_response() -> Response {
    error_page(Failure::Page(PageError::BadCsrf))
}

pub(super) fn page_or_error(result: Result<Response, Failure>) -> Response {
    result.unwrap_or_else(error_page)
}

/// The browser's CSRF token, and the cookie that sets it when the browser had none.
fn csrf_token(app: &App, req: &Request) -> Result<(String, Option<String>), Failure> {
    Ok(csrf_token_under(app, req, "/oauth2")?)
}

/// [`csrf_token`] for the pages under `path` (see [`cookie_at`]).
pub(crate) fn csrf_token_under(app: &App, req: &Request, path: &str) -> Result<(String, Option<String>), FlowError> {
    if let Some(token) = req.cookie(csrf_cookie_name(app)).filter(|t| Secret::parse(t).is_some()) {
        return Ok((token, None));
    }
    let token = Secret::generate()?.encode();
    let set = cookie_at(app, path, csrf_cookie_name(app), &token, None);
    Ok((token, Some(set)))
}

/// A form's CSRF token must equal the browser's CSRF cookie.
pub(crate) fn check_csrf(app: &App, req: &Request, form: &OAuthForm) -> Result<(), PageError> {
    if csrf_matches(app, req, form.get("csrf_token")) { Ok(()) } else { Err(PageError::BadCsrf) }
}

/// Whether `sent` (a form's `csrf_token`) equals the browser's CSRF cookie.
pub(crate) fn csrf_matches(app: &App, req: &Request, sent: Option<&str>) -> bool {
    let cookie = req.cookie(csrf_cookie_name(app)).filter(|c| Secret::parse(c).is_some());
    match (cookie, sent) {
        (Some(c), Some(sent)) => {
            aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), sent.as_bytes()).is_ok()
        }
        _ => false,
    }
}

/// The request's parameters: its query (GET) or its form (POST).
/// A form a page of the authorization flow posted: its fields, CSRF-checked, and the
/// authorization request they carry, checked again against the client's registration as it is
/// now (`Err` with the redirect when the request must go back to the client).
async fn posted_request(
    app: &App,
    req: &mut Request,
) -> Result<Result<(OAuthForm, authorize::Request), Response>, Failure> {
    let form = parameters(req).await?;
    check_csrf(app, req, &form)?;
    Ok(match authorize::check_request(app, &form, Registration::Current).await? {
        Checked::Valid(r) => Ok((form, r)),
        Checked::Back(back) => Err(redirect(&back, true)),
    })
}

pub(super) async fn parameters(req: &mut Request) -> Result<OAuthForm, Failure> {
    let pairs = if req.method == Method::POST { req.form().await? } else { req.query_pairs()? };
    OAuthForm::new(pairs).map_err(Failure::from)
}

fn sign_in_error_text(error: SignInError) -> String {
    match error {
        SignInError::BadCredentials => "Wrong username or password.".into(),
        SignInError::EmailUnverified => {
            "Your email address is not verified yet. Check your inbox: we have mailed you a \
             link to verify it."
                .into()
        }
        SignInError::Throttled(wait) => {
            format!("Too many attempts. Try again in {} seconds.", wait.as_secs_f64().ceil().max(1.0) as u64)
        }
        SignInError::Expired => "Your sign-in took too long or had too many attempts. Please sign in again.".into(),
        SignInError::Passkey => "That passkey was not accepted. Try again, or sign in with your password.".into(),
    }
}

fn second_factor_error_text(error: SecondFactorError) -> &'static str {
    match error {
        SecondFactorError::WrongCode => "That code is not right. Check your authenticator app and try again.",
        SecondFactorError::Passkey => "That passkey was not accepted. Try again.",
    }
}

/// The answer to a step of the flow: a redirect, or a page whose form carries the request and
/// the CSRF token.
fn render(
    app: &App,
    req: &Request,
    step: Step,
    after_form: bool,
    mut cookies: Vec<String>,
) -> Result<Response, Failure> {
    let mut resp = match step {
        Step::Redirect(uri) => redirect(&uri, after_form),
        Step::SignIn { request, login, error } => {
            let (token, set) = csrf_token(app, req)?;
            cookies.extend(set);
            let mut fields: Vec<(&str, &str)> = request.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            fields.push(("csrf_token", &token));
            let text = error.map(sign_in_error_text);
            let page = pages::SignIn {
                client_name: &request.client.metadata().client_name,
                login: &login,
                error: text.as_deref(),
                fields: &fields,
            };
            let status = match error {
                None => StatusCode::OK,
                Some(SignInError::BadCredentials | SignInError::Expired | SignInError::Passkey) => {
                    StatusCode::BAD_REQUEST
                }
                Some(SignInError::EmailUnverified) => StatusCode::FORBIDDEN,
                Some(SignInError::Throttled(_)) => StatusCode::TOO_MANY_REQUESTS,
            };
            let mut resp = html(status, pages::sign_in(&page), Some(&request.redirect_uri));
            if let Some(SignInError::Throttled(wait)) = error {
                resp.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, (wait.as_secs_f64().ceil().max(1.0) as u64).into());
            }
            resp
        }
        Step::Consent { request, username, scopes } => {
            let (token, set) = csrf_token(app, req)?;
            cookies.extend(set);
            let mut fields: Vec<(&str, &str)> = request.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            fields.push(("csrf_token", &token));
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let page = pages::ConsentPage {
                client_name: &request.client.metadata().client_name,
                username: &username,
                scopes: &scopes,
                fields: &fields,
            };
            html(StatusCode::OK, pages::consent(&page), Some(&request.redirect_uri))
        }
        Step::SecondFactor { request, mfa_token, factors, error } => {
            let (token, set) = csrf_token(app, req)?;
            cookies.extend(set);
            let mut fields: Vec<(&str, &str)> = request.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            fields.push(("mfa_token", &mfa_token));
            fields.push(("csrf_token", &token));
            let page = pages::SecondFactor {
                client_name: &request.client.metadata().client_name,
                totp: factors.totp,
                passkey: factors.webauthn,
                error: error.map(second_factor_error_text),
                fields: &fields,
            };
            let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
            html(status, pages::second_factor(&page), Some(&request.redirect_uri))
        }
        Step::Enrol { request, username } => {
            let query = serde_urlencoded::to_string(&request.fields).unwrap_or_default();
            let back = format!("/oauth2/authorize?{query}");
            let setup =
                format!("{SECURITY_PAGE}?{}", serde_urlencoded::to_string([("continue", &back)]).unwrap_or_default());
            let page = pages::enrol(&request.client.metadata().client_name, &username, &setup);
            html(StatusCode::OK, page, Some(&request.redirect_uri))
        }
    };
    set_cookies(&mut resp, &cookies);
    Ok(resp)
}

/// `GET` and `POST /oauth2/authorize`: an authorization request (OpenID Connect Core §3.1.2.1
/// allows both), or the sign-in form (a POST carrying a CSRF token).
pub async fn authorize(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = parameters(&mut req).await?;
            let after_form = req.method == Method::POST;
            if after_form && form.get("csrf_token").is_some() {
                return sign_in(app, &req, &form, session).await;
            }
            // A browser without a session is mostly shown the sign-in page: rendered from a
            // recently cached registration, unless the request would go anywhere else, which
            // is decided on the current one.
            if session.is_none()
                && let Ok(Checked::Valid(request)) = authorize::check_request(app, &form, Registration::Recent).await
            {
                let step = authorize::decide(app, request, None, false).await?;
                if step.is_sign_in_page() {
                    return render(app, &req, step, after_form, Vec::new());
                }
            }
            let request = match authorize::check_request(app, &form, Registration::Current).await? {
                Checked::Valid(r) => r,
                Checked::Back(back) => return Ok(redirect(&back, after_form)),
            };
            let step = authorize::decide(app, request, session, false).await?;
            render(app, &req, step, after_form, Vec::new())
        }
        .await,
    )
}

async fn sign_in(
    app: &App,
    req: &Request,
    form: &OAuthForm,
    session: Option<BrowserSession>,
) -> Result<Response, Failure> {
    check_csrf(app, req, form)?;
    let request = match authorize::check_request(app, form, Registration::Current).await? {
        Checked::Valid(r) => r,
        Checked::Back(back) => return Ok(redirect(&back, true)),
    };
    let username = form.get("username").unwrap_or_default().to_string();
    let password = form.get("password").unwrap_or_default().to_string();
    let outcome = authorize::sign_in(app, request, username, password, &req.peer()).await?;
    signed_in_reply(app, req, session, outcome).await
}

/// Answers a step of a sign-in: a new browser session replaces the one there was.
async fn signed_in_reply(
    app: &App,
    req: &Request,
    session: Option<BrowserSession>,
    (step, signed_in): (Step, Option<authorize::SignedIn>),
) -> Result<Response, Failure> {
    let mut cookies = Vec::new();
    if let Some(new) = signed_in {
        if let Some(old) = session {
            openid::sign_out(app, &old).await?;
        }
        cookies.push(session_set_cookie(app, &new.cookie, app.config.oauth.browser_session_ttl));
    }
    render(app, req, step, true, cookies)
}

/// `POST /oauth2/authorize/mfa`: the second-factor page's code form.
pub async fn second_factor(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let (form, request) = match posted_request(app, &mut req).await? {
                Ok(posted) => posted,
                Err(back) => return Ok(back),
            };
            let mfa_token = form.get("mfa_token").unwrap_or_default().to_string();
            let kind = match form.get("method") {
                None | Some("totp") => CodeKind::Totp,
                Some("recovery_code") => CodeKind::RecoveryCode,
                Some(_) => return Err(PageError::BadRequest("method must be totp or recovery_code".into()).into()),
            };
            let code = form.get("code").unwrap_or_default();
            let outcome = authorize::second_factor(app, request, mfa_token, kind, code, &req.peer()).await?;
            signed_in_reply(app, &req, session, outcome).await
        }
        .await,
    )
}

/// `POST /oauth2/authorize/passkey`: a passkey's assertion (the page script submits it with the
/// request's fields): the second factor of the step `mfa_token` names, or without one a
/// passwordless sign-in.
pub async fn passkey(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let (form, request) = match posted_request(app, &mut req).await? {
                Ok(posted) => posted,
                Err(back) => return Ok(back),
            };
            let (ceremony, credential) = passkey_fields(&form)?;
            let mfa_token = form.get("mfa_token").map(str::to_string);
            let outcome = authorize::passkey(app, request, mfa_token, ceremony, &credential, &req.peer()).await?;
            signed_in_reply(app, &req, session, outcome).await
        }
        .await,
    )
}

/// The ceremony id and the credential JSON a passkey form carries.
pub(crate) fn passkey_fields(form: &OAuthForm) -> Result<(uuid::Uuid, serde_json::Value), PageError> {
    let ceremony = form
        .get("ceremony")
        .and_then(|c| uuid::Uuid::parse_str(c).ok())
        .ok_or_else(|| PageError::BadRequest("ceremony must be the id the passkey start answered".into()))?;
    let credential = form
        .get("credential")
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| PageError::BadRequest("credential must be the passkey's JSON".into()))?;
    Ok((ceremony, credential))
}

/// A JSON answer of a page endpoint the page script calls, with the pages' headers.
pub(crate) fn script_json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = response::json(status, body);
    protect(&mut resp, None);
    resp
}

/// A refusal of a page endpoint the page script calls: `{"error","detail"}`, never a page.
pub(crate) fn script_error(status: StatusCode, error: &str, detail: &str) -> Response {
    script_json(status, &serde_json::json!({ "error": error, "detail": detail }))
}

/// The JSON answer of a passkey ceremony begun for the page script.
pub(crate) fn ceremony_reply(result: Result<crate::flows::webauthn::Ceremony, FlowError>) -> Response {
    match result {
        Ok(c) => script_json(StatusCode::OK, &serde_json::json!({ "ceremony": c.id, "options": c.options })),
        Err(FlowError::InvalidMfaToken) => {
            script_error(StatusCode::UNAUTHORIZED, "invalid_mfa_token", "this sign-in is over; please sign in again")
        }
        Err(e) => {
            let api = ApiError::from(e);
            script_error(api.status(), "passkey_unavailable", &api.to_string())
        }
    }
}

/// `POST /oauth2/authorize/passkey/start`: the options of a passkey sign-in, for the page
/// script (JSON): for the step `mfa_token` names, or passwordless without one. CSRF-checked.
pub async fn passkey_start(app: &App, mut req: Request, _session: Option<BrowserSession>) -> Response {
    let form = match parameters(&mut req).await {
        Ok(form) => form,
        Err(_) => return script_error(StatusCode::BAD_REQUEST, "invalid_request", "expected the page's form fields"),
    };
    if check_csrf(app, &req, &form).is_err() {
        return script_error(StatusCode::FORBIDDEN, "invalid_csrf_token", "this page has expired; reload it");
    }
    let started = crate::flows::webauthn::sign_in_start(app, form.get("mfa_token"), StepKind::Browser).await;
    ceremony_reply(started)
}

/// `POST /oauth2/consent`: the consent form's answer.
pub async fn consent(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let (form, request) = match posted_request(app, &mut req).await? {
                Ok(posted) => posted,
                Err(back) => return Ok(back),
            };
            let allow = match form.get("decision") {
                Some("allow") => true,
                Some("deny") => false,
                _ => return Err(PageError::BadRequest("decision must be allow or deny".into()).into()),
            };
            let step = authorize::consent(app, request, session, allow).await?;
            render(app, &req, step, true, Vec::new())
        }
        .await,
    )
}

/// The parameters of RP-initiated logout that the confirmation form carries.
const LOGOUT_FIELDS: &[&str] = &["id_token_hint", "post_logout_redirect_uri", "state", "client_id"];

/// `GET` and `POST /oauth2/logout` (OpenID Connect RP-Initiated Logout): a GET of a signed-in
/// browser asks first; the confirmation (a POST with the CSRF token) ends the browser session
/// and goes back to the client's registered `post_logout_redirect_uri`, if one was given.
pub async fn logout(app: &App, mut req: Request, session: Option<BrowserSession>) -> Response {
    page_or_error(
        async {
            let form = parameters(&mut req).await?;
            let target = openid::post_logout_target(app, &form).await?;
            let signed_out = || match &target {
                Some(uri) => redirect(uri, req.method == Method::POST),
                None => html(StatusCode::OK, pages::signed_out(), None),
            };
            if req.method == Method::POST {
                check_csrf(app, &req, &form)?;
                if let Some(s) = &session {
                    openid::sign_out(app, s).await?;
                }
                let mut resp = signed_out();
                set_cookies(&mut resp, &[session_set_cookie(app, "", Duration::ZERO)]);
                return Ok(resp);
            }
            let Some(session) = session else { return Ok(signed_out()) };
            let (token, set) = csrf_token(app, &req)?;
            let mut fields: Vec<(&str, &str)> =
                LOGOUT_FIELDS.iter().filter_map(|name| form.get(name).map(|v| (*name, v))).collect();
            fields.push(("csrf_token", &token));
            let mut resp = html(StatusCode::OK, pages::sign_out(&session.user.username, &fields), target.as_deref());
            set_cookies(&mut resp, &set.into_iter().collect::<Vec<_>>());
            Ok(resp)
        }
        .await,
    )
}

/// `GET /oauth2/assets/{asset}`: the pages' stylesheet and passkey script, under the hashed
/// names the pages link (so they never change under that name and may be kept for a year); any
/// other name is 404.
pub async fn asset(_app: &App, req: Request) -> Result<Response, ApiError> {
    let name = req.params.first().map(String::as_str).unwrap_or_default();
    let (media_type, body) = pages::asset(name).ok_or_else(|| ApiError::NotFound("no such asset".into()))?;
    let mut resp = response::with_body(StatusCode::OK, media_type, body.into());
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    resp.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(resp)
}

/// `GET` and `POST /oauth2/userinfo` (OpenID Connect Core §5.3): the claims the token's scopes
/// allow, of the user as they are now.
pub async fn userinfo(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    let body = openid::userinfo(app, &principal.claims).await?;
    let mut resp = response::json(StatusCode::OK, &body);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /api/v1/consents`: the clients the caller has let in, and to what.
pub async fn consents(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    let rows = authorize::consents(app, principal.user_id).await?;
    let body: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "client_id": r.client_id,
                "client_name": r.client_name,
                "scope": r.scope,
                "granted_at": response::rfc3339(r.granted_at),
            })
        })
        .collect();
    Ok(response::json(StatusCode::OK, &body))
}

/// `DELETE /api/v1/consents/{client_id}`: takes a consent back and ends that client's sessions.
pub async fn revoke_consent(app: &App, req: Request, principal: Principal) -> Result<Response, ApiError> {
    let client_id = req.params.first().map(String::as_str).unwrap_or_default();
    authorize::revoke_consent(app, principal.user_id, client_id).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_action_names_only_the_redirect_uris_origin() {
        assert_eq!(csp_source("https://app.example:8443/cb?x=1").as_deref(), Some("https://app.example:8443"));
        assert_eq!(csp_source("http://127.0.0.1:9000/callback").as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(csp_source("com.example.app:/oauth").as_deref(), Some("com.example.app:"));
        assert_eq!(csp_source("https://a.example;script-src *"), None);
    }
}
