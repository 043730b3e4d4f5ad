//! `ApiError`: the one place where failures become HTTP status codes and JSON bodies
//! `{"error": CODE, "detail": TEXT}`. Flows return a [`FlowError`] and this module alone maps
//! it (see `From<FlowError>`); the front end adds its own failures (malformed bodies, wrong
//! media types, limits of the transport).

use std::time::Duration;

use auth_actors::CallError;
use hyper::StatusCode;

use super::response::{self, Response};
use crate::domain::FieldError;
use crate::flows::error::FlowError;
use crate::flows::error::Rejection;

/// Every way a request can fail, as the client should see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A Bearer token that was sent but is invalid, expired or revoked (RFC 6750 §3.1
    /// `invalid_token` in the challenge).
    #[error("{0}")]
    InvalidToken(String),
    /// The token of a link mailed to an account cannot be used (400 `invalid_token`; not a
    /// Bearer token, so no challenge).
    #[error("{0}")]
    InvalidLink(String),
    /// A valid Bearer token without the scope the route needs (RFC 6750 §3.1).
    #[error("the token lacks scope {0}")]
    InsufficientScope(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// A right password of an account whose address must be verified first (403
    /// `email_unverified`).
    #[error("{0}")]
    EmailUnverified(String),
    /// A right password of an account with a second factor (403 `mfa_required`, with the
    /// `mfa_token` and methods in the body).
    #[error("a second factor is required to complete this sign-in")]
    MfaRequired(Box<crate::flows::error::Challenge>),
    /// A second step refused: `code` is `invalid_mfa_token` or `invalid_code` (401).
    #[error("{detail}")]
    MfaRefused { code: &'static str, detail: String },
    /// A refusal with its own code (passkey ceremonies: `invalid_credential`, `invalid_ceremony`,
    /// `invalid_passkey`, `no_passkey`, `passkeys_unavailable`).
    #[error("{detail}")]
    Refused { status: StatusCode, code: &'static str, detail: String },
    #[error("{0}")]
    NotFound(String),
    /// Carries the methods the path does allow, for the `Allow` header.
    #[error("method not allowed")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("request took too long to arrive")]
    RequestTimeout,
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// A dependency (PostgreSQL, Redis, an actor, the hashing pool) cannot serve now.
    #[error("{what} unavailable")]
    Unavailable { what: String, retry_after: Duration },
    /// An error of the OAuth protocol, with its own code and body shape
    /// (`{"error", "error_description"}`, RFC 6749 §5.2 and RFC 7591 §3.2.2).
    #[error("{description}")]
    OAuth {
        status: StatusCode,
        code: &'static str,
        description: String,
        /// `WWW-Authenticate` of an `invalid_client` answer.
        challenge: Option<&'static str>,
        retry_after: Option<Duration>,
    },
}

impl ApiError {
    pub fn unavailable(what: impl Into<String>) -> Self {
        ApiError::Unavailable { what: what.into(), retry_after: Duration::from_secs(1) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidLink(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::InvalidToken(_) | ApiError::MfaRefused { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_)
            | ApiError::InsufficientScope(_)
            | ApiError::EmailUnverified(_)
            | ApiError::MfaRequired(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OAuth { status, .. } | ApiError::Refused { status, .. } => *status,
        }
    }

    /// The stable machine-readable code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidLink(_) => "invalid_token",
            ApiError::Unauthorized(_) | ApiError::InvalidToken(_) => "unauthorized",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::EmailUnverified(_) => "email_unverified",
            ApiError::MfaRequired(_) => "mfa_required",
            ApiError::MfaRefused { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "invalid_field",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "service_unavailable",
            ApiError::OAuth { code, .. } | ApiError::Refused { code, .. } => code,
        }
    }

    pub fn into_response(self) -> Response {
        let body = match &self {
            // Both names of the text, so that OAuth clients and this API's own clients find it.
            ApiError::OAuth { code, description, .. } => {
                serde_json::json!({ "error": code, "error_description": description, "detail": description })
            }
            ApiError::MfaRequired(c) => serde_json::json!({
                "error": self.code(),
                "detail": self.to_string(),
                "mfa_token": c.mfa_token,
                "methods": c.methods,
                "expires_in": c.expires_in,
            }),
            _ => serde_json::json!({ "error": self.code(), "detail": self.to_string() }),
        };
        let mut resp = response::json(self.status(), &body);
        let headers = resp.headers_mut();
        match &self {
            ApiError::OAuth { challenge, retry_after, .. } => {
                if let Some(c) = challenge {
                    headers.insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static(c));
                }
                if let Some(r) = retry_after {
                    headers.insert(hyper::header::RETRY_AFTER, (r.as_secs_f64().ceil().max(1.0) as u64).into());
                }
                headers.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
                headers.insert(hyper::header::PRAGMA, hyper::header::HeaderValue::from_static("no-cache"));
            }
            ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(hyper::header::RETRY_AFTER, secs.into());
            }
            ApiError::Unauthorized(_) => {
                headers.insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
            }
            ApiError::InvalidToken(_) => {
                let challenge = "Bearer error=\"invalid_token\"";
                headers.insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static(challenge));
            }
            ApiError::InsufficientScope(scope) => {
                let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
                if let Ok(v) = hyper::header::HeaderValue::from_str(&challenge) {
                    headers.insert(hyper::header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::MethodNotAllowed(allow) => {
                if let Ok(v) = hyper::header::HeaderValue::from_str(allow) {
                    headers.insert(hyper::header::ALLOW, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// The one mapping of a flow's failure to what the client is told.
impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        let detail = e.to_string();
        match e {
            FlowError::Field(_) | FlowError::InvalidValue => ApiError::Unprocessable(detail),
            FlowError::Token(Rejection::Invalid | Rejection::Revoked) => ApiError::InvalidToken(detail),
            FlowError::InsufficientScope(scope) => ApiError::InsufficientScope(scope),
            FlowError::BadCredentials
            | FlowError::Token(_)
            | FlowError::UserGone
            | FlowError::RefreshInvalid
            | FlowError::RefreshReused => ApiError::Unauthorized(detail),
            FlowError::WrongPassword | FlowError::MissingRole(_) => ApiError::Forbidden(detail),
            FlowError::NotFound(_) | FlowError::RoleNotHeld => ApiError::NotFound(detail),
            FlowError::RoleAlreadyHeld
            | FlowError::BuiltInRole(_)
            | FlowError::ReservedRoleName(_)
            | FlowError::LastAdmin
            | FlowError::Taken(_)
            | FlowError::PasswordChangedMeanwhile
            | FlowError::MfaState(_)
            | FlowError::Contention => ApiError::Conflict(detail),
            FlowError::Throttled { retry_after } => ApiError::RateLimited { retry_after },
            FlowError::InvalidAccountToken => ApiError::InvalidLink(detail),
            FlowError::EmailUnverified => ApiError::EmailUnverified(detail),
            FlowError::MfaRequired(challenge) => ApiError::MfaRequired(challenge),
            FlowError::InvalidMfaToken => ApiError::MfaRefused { code: "invalid_mfa_token", detail },
            FlowError::InvalidMfaCode => ApiError::MfaRefused { code: "invalid_code", detail },
            FlowError::Unavailable(what) => {
                ApiError::Unavailable { what: what.to_string(), retry_after: Duration::from_secs(1) }
            }
            FlowError::Passkey(p) => {
                use crate::flows::error::PasskeyError as P;
                let (status, code) = match p {
                    P::Disabled => (StatusCode::SERVICE_UNAVAILABLE, "passkeys_unavailable"),
                    P::Malformed | P::RegistrationRefused(_) => (StatusCode::BAD_REQUEST, "invalid_credential"),
                    P::UnknownCeremony => (StatusCode::BAD_REQUEST, "invalid_ceremony"),
                    P::NoPasskey => (StatusCode::BAD_REQUEST, "no_passkey"),
                    P::AssertionRefused(_) => (StatusCode::UNAUTHORIZED, "invalid_passkey"),
                    P::Internal => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
                };
                ApiError::Refused { status, code, detail }
            }
            FlowError::NotYours => ApiError::OAuth {
                status: StatusCode::BAD_REQUEST,
                code: "unauthorized_client",
                description: detail,
                challenge: None,
                retry_after: None,
            },
            FlowError::ClientMetadata { code, description } => ApiError::OAuth {
                status: StatusCode::BAD_REQUEST,
                code,
                description,
                challenge: None,
                retry_after: None,
            },
        }
    }
}

/// RFC 6749 §5.2: 400, except `invalid_client`, which is 401 with `WWW-Authenticate` (Basic
/// when the client tried Basic; every failure of it, since this service always answers 401);
/// a throttled client is 429 with `Retry-After`. A failure of the service behind the protocol
/// is answered as any other (503).
impl From<crate::oauth::protocol::OAuthError> for ApiError {
    fn from(e: crate::oauth::protocol::OAuthError) -> Self {
        use crate::oauth::protocol::OAuthError;
        let (status, challenge, retry_after) = match &e {
            OAuthError::InvalidClient { basic: true, .. } => {
                (StatusCode::UNAUTHORIZED, Some("Basic realm=\"auth-service\", charset=\"UTF-8\""), None)
            }
            OAuthError::InvalidClient { .. } => (StatusCode::UNAUTHORIZED, Some("Basic realm=\"auth-service\""), None),
            OAuthError::Throttled { retry_after, .. } => (StatusCode::TOO_MANY_REQUESTS, None, Some(*retry_after)),
            _ => (StatusCode::BAD_REQUEST, None, None),
        };
        let code = e.code();
        match e {
            OAuthError::Flow(FlowError::InvalidValue) => ApiError::OAuth {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request",
                description: FlowError::InvalidValue.to_string(),
                challenge: None,
                retry_after: None,
            },
            OAuthError::Flow(flow) => flow.into(),
            other => ApiError::OAuth { status, code, description: other.to_string(), challenge, retry_after },
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        FlowError::from(e).into()
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        FlowError::from(e).into()
    }
}
