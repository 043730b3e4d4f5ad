//! `/api/v1/auth/*`: login (and its second step), refresh, logout.

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE};
use serde::Deserialize;

use crate::app::App;
use crate::flows::authenticate::Principal;
use crate::flows::tokens::{self, Issued};
use crate::flows::{login, logout as logout_flow, mfa as mfa_flow, refresh as refresh_flow, totp};
use crate::http::{ApiError, Request, Response, response};

/// The token response (with the refresh token in the body too when `echo_refresh`, for clients
/// that sent it in a body) and the refresh cookie.
pub(super) fn issued(app: &App, issued: Issued, echo_refresh: bool) -> Response {
    let mut body = serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
    });
    if echo_refresh {
        body["refresh_token"] = issued.refresh_token.clone().into();
    }
    let mut resp = response::json(StatusCode::OK, &body);
    let cookie = tokens::refresh_cookie(&app.config.http, &issued.refresh_token, app.config.tokens.refresh_ttl);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn clear_cookie(app: &App, resp: &mut Response) {
    if let Ok(v) = HeaderValue::from_str(&tokens::clear_cookie(&app.config.http)) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
}

/// A browser's request to sign in, refresh or sign out must come from an allowed origin (the
/// service's own, or one of `ALLOWED_ORIGINS`): otherwise another site's page could make the
/// browser refresh or end the user's session, or sign it in to the attacker's account (login
/// CSRF: the browser stores the refresh cookie of a cross-site response even though
/// `SameSite=Strict` keeps it from being sent). `Origin: null` (sandboxed frames, some
/// redirects) is refused like any foreign origin, and so is `Sec-Fetch-Site: cross-site` with
/// or without an `Origin`. A request with neither header (a non-browser client) passes.
pub(super) fn check_origin(app: &App, req: &Request) -> Result<(), ApiError> {
    let refused = || Err(ApiError::Forbidden("origin not allowed".into()));
    if req.header("sec-fetch-site").is_some_and(|site| site.trim().eq_ignore_ascii_case("cross-site")) {
        return refused();
    }
    let Some(origin) = req.header(hyper::header::ORIGIN) else { return Ok(()) };
    let origin = origin.trim_end_matches('/');
    let own = app.config.tokens.public_url.as_str();
    let own_origin = own.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    if origin == own_origin || app.config.http.allowed_origins.iter().any(|o| o.trim_end_matches('/') == origin) {
        Ok(())
    } else {
        refused()
    }
}

pub async fn login_form(app: &App, mut req: Request) -> Result<Response, ApiError> {
    check_origin(app, &req)?;
    let input: login::LoginInput = req.form().await?;
    Ok(issued(app, login::login(app, input, &req.peer()).await?, false))
}

pub async fn login_json(app: &App, mut req: Request) -> Result<Response, ApiError> {
    check_origin(app, &req)?;
    let input: login::LoginInput = req.json().await?;
    Ok(issued(app, login::login(app, input, &req.peer()).await?, false))
}

/// The second step's body: the `mfa_token` of the `mfa_required` answer and a code.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MfaBody {
    mfa_token: String,
    method: MfaMethod,
    code: String,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum MfaMethod {
    Totp,
    RecoveryCode,
}

/// `POST /api/v1/auth/mfa`: the second step of an API login; a success answers exactly as
/// `login-json` does.
pub async fn mfa(app: &App, mut req: Request) -> Result<Response, ApiError> {
    check_origin(app, &req)?;
    let body: MfaBody = req.json().await?;
    let peer = req.peer();
    let kind = match body.method {
        MfaMethod::Totp => totp::CodeKind::Totp,
        MfaMethod::RecoveryCode => totp::CodeKind::RecoveryCode,
    };
    let step = mfa_flow::attempt(app, &body.mfa_token, mfa_flow::StepKind::Api, &peer).await?;
    let checked = totp::second_step(app, step, kind, &body.code, &peer).await?;
    Ok(issued(app, login::start_api_session(app, &checked, &peer).await?, false))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// The refresh token from a JSON body when one is sent, else from the cookie; and whether it
/// came from the body.
async fn presented_refresh(app: &App, req: &mut Request) -> Result<(Option<String>, bool), ApiError> {
    let json_body = req
        .header(hyper::header::CONTENT_TYPE)
        .is_some_and(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if json_body {
        let body: RefreshBody = req.json().await?;
        if let Some(token) = body.refresh_token {
            return Ok((Some(token), true));
        }
    }
    check_origin(app, req)?;
    Ok((req.cookie(tokens::refresh_cookie_name(&app.config.http)).filter(|c| !c.is_empty()), false))
}

pub async fn refresh(app: &App, mut req: Request) -> Result<Response, ApiError> {
    let (token, from_body) = presented_refresh(app, &mut req).await?;
    let token = token.ok_or_else(|| ApiError::Unauthorized("missing refresh token".into()))?;
    let result = refresh_flow::refresh(app, &token, &req.peer()).await.map_err(ApiError::from);
    match result {
        Ok(tokens) => Ok(issued(app, tokens, from_body)),
        Err(e @ ApiError::Unauthorized(_)) => {
            // A dead refresh token is useless to the browser: clear it.
            let mut resp = e.into_response();
            clear_cookie(app, &mut resp);
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

pub async fn logout(app: &App, mut req: Request) -> Result<Response, ApiError> {
    let (token, _) = presented_refresh(app, &mut req).await?;
    logout_flow::logout(app, token.as_deref(), req.bearer()).await?;
    let mut resp = response::json(StatusCode::OK, &serde_json::json!({ "detail": "logged out" }));
    clear_cookie(app, &mut resp);
    Ok(resp)
}

pub async fn logout_all(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    let revoked = logout_flow::logout_all(app, &principal).await?;
    let mut resp = response::json(
        StatusCode::OK,
        &serde_json::json!({ "detail": "logged out everywhere", "sessions_revoked": revoked }),
    );
    clear_cookie(app, &mut resp);
    Ok(resp)
}
