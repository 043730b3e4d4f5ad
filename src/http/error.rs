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

/// Every way a request can fail, as the client should see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
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
}

impl ApiError {
    pub fn unavailable(what: impl Into<String>) -> Self {
        ApiError::Unavailable { what: what.into(), retry_after: Duration::from_secs(1) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "invalid_field",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "service_unavailable",
        }
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code(), "detail": self.to_string() });
        let mut resp = response::json(self.status(), &body);
        let headers = resp.headers_mut();
        match &self {
            ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(hyper::header::RETRY_AFTER, secs.into());
            }
            ApiError::Unauthorized(_) => {
                headers.insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
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
            FlowError::Field(_) => ApiError::Unprocessable(detail),
            FlowError::BadCredentials
            | FlowError::Token(_)
            | FlowError::UserGone
            | FlowError::RefreshInvalid
            | FlowError::RefreshReused => ApiError::Unauthorized(detail),
            FlowError::WrongPassword | FlowError::MissingRole(_) => ApiError::Forbidden(detail),
            FlowError::NotFound(_) | FlowError::RoleNotHeld => ApiError::NotFound(detail),
            FlowError::RoleAlreadyHeld
            | FlowError::Taken(_)
            | FlowError::PasswordChangedMeanwhile
            | FlowError::Contention => ApiError::Conflict(detail),
            FlowError::Throttled { retry_after } => ApiError::RateLimited { retry_after },
            FlowError::Unavailable(what) => {
                ApiError::Unavailable { what: what.to_string(), retry_after: Duration::from_secs(1) }
            }
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
