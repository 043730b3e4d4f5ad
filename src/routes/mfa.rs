//! `/api/v1/mfa*` and `DELETE /api/v1/users/{user_id}/mfa`: a user's second factors (TOTP and
//! its recovery codes; passkeys are counted here, managed elsewhere), and an admin's removal of
//! them. The second step of a login is `POST /api/v1/auth/mfa` ([`super::auth::mfa`]).

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};
use serde::Deserialize;

use crate::app::App;
use crate::domain::FieldError;
use crate::flows::authenticate::Principal;
use crate::flows::error::FlowError;
use crate::flows::{mfa, totp};
use crate::http::{ApiError, Request, Response, response};

/// A body with secrets in it is never cached.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `{password}` or `{code}`: what proves the caller may change the account's factors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofBody {
    password: Option<String>,
    code: Option<String>,
}

impl ProofBody {
    fn proof(self) -> Result<totp::Proof, FlowError> {
        match (self.password, self.code) {
            (Some(p), None) => Ok(totp::Proof::Password(p)),
            (None, Some(c)) => Ok(totp::Proof::Code(c)),
            _ => Err(FieldError::new("password", "give either password or code (a current TOTP code)").into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

/// `GET /api/v1/mfa`.
pub async fn summary(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    let s = totp::summary(app, principal.user_id).await?;
    let factors = auth_actors::db::mfa::Factors { totp: s.totp, webauthn: s.webauthn_credentials > 0 };
    Ok(response::json(
        StatusCode::OK,
        &serde_json::json!({
            "totp": s.totp,
            "recovery_codes_remaining": s.recovery_codes_remaining,
            "webauthn_credentials": s.webauthn_credentials,
            "methods": mfa::methods(factors),
        }),
    ))
}

/// `POST /api/v1/mfa/totp`: a new authenticator, unconfirmed.
pub async fn enrol(app: &App, _req: Request, principal: Principal) -> Result<Response, ApiError> {
    let user = app
        .services
        .db
        .run(auth_actors::db::users::Get { id: principal.user_id })
        .await
        .map_err(FlowError::from)?
        .ok_or(FlowError::UserGone)?;
    let e = totp::enrol(app, &user).await?;
    Ok(no_store(response::json(
        StatusCode::OK,
        &serde_json::json!({ "secret": e.secret, "otpauth_uri": e.otpauth_uri }),
    )))
}

/// `POST /api/v1/mfa/totp/confirm`.
pub async fn confirm(app: &App, mut req: Request, principal: Principal) -> Result<Response, ApiError> {
    let body: CodeBody = req.json().await?;
    let codes = totp::confirm(app, principal.user_id, &body.code, &req.peer()).await?;
    Ok(no_store(response::json(StatusCode::OK, &serde_json::json!({ "recovery_codes": codes }))))
}

/// `DELETE /api/v1/mfa/totp`.
pub async fn remove(app: &App, mut req: Request, principal: Principal) -> Result<Response, ApiError> {
    let body: ProofBody = req.json().await?;
    totp::remove(app, principal.user_id, body.proof()?, &req.peer()).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `POST /api/v1/mfa/recovery-codes`: a new set.
pub async fn recovery_codes(app: &App, mut req: Request, principal: Principal) -> Result<Response, ApiError> {
    let body: ProofBody = req.json().await?;
    let codes = totp::regenerate_recovery_codes(app, principal.user_id, body.proof()?, &req.peer()).await?;
    Ok(no_store(response::json(StatusCode::OK, &serde_json::json!({ "recovery_codes": codes }))))
}

/// `DELETE /api/v1/users/{user_id}/mfa` (admin).
pub async fn admin_remove(app: &App, req: Request, admin: Principal) -> Result<Response, ApiError> {
    let raw = req.params.first().map(String::as_str).unwrap_or_default();
    totp::admin_remove(app, &admin, raw, &req.peer()).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}
