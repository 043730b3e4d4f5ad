//! The JWKS and the discovery documents.
//!
//! The JWKS involves **no message at all**: `KeyManagerHandle::jwks` checks that the KeyManager's
//! slot is filled (503 otherwise), reads the latest `Arc<KeySet>`, whose JWKS bytes and strong ETag
//! were computed once when it was loaded, and the handler answers 304 when `If-None-Match` names
//! the ETag, else 200 with the cached bytes; both with `Cache-Control: public,
//! max-age=JWKS_MAX_AGE`. Key reloads (SIGHUP, or a change of `keys.json` noticed by the poll) are
//! the messages that do go to the KeyManager: it loads the directory again and publishes the new
//! snapshot if it differs (keys, active key or problems); only an unreadable `keys.json` keeps the
//! old one.

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};

use crate::app::App;
use crate::http::{ApiError, Request, Response, response};
use crate::metrics::{Outcome, OutcomeLabels};

/// `GET /.well-known/jwks.json`: the cached bytes with a strong ETag, 304 when the client's
/// `If-None-Match` already names it.
pub async fn jwks(app: &App, req: Request) -> Result<Response, ApiError> {
    let doc = app.services.keys.jwks()?;
    let cache = HeaderValue::from_str(&format!("public, max-age={}", app.config.tokens.jwks_max_age.as_secs()))
        .unwrap_or(HeaderValue::from_static("public, max-age=300"));
    let etag = HeaderValue::from_str(&doc.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let matches =
        req.header(IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == doc.etag || t.trim() == "*"));
    let (mut resp, outcome) = if matches {
        (response::empty(StatusCode::NOT_MODIFIED), Outcome::not_modified)
    } else {
        (response::with_body(StatusCode::OK, "application/json", doc.body.clone()), Outcome::served)
    };
    app.metrics.jwks.get_or_create(&OutcomeLabels { outcome }).inc();
    resp.headers_mut().insert(CACHE_CONTROL, cache);
    resp.headers_mut().insert(ETAG, etag);
    Ok(resp)
}

/// `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`.
pub async fn discovery(app: &App, _req: Request) -> Result<Response, ApiError> {
    let mut resp = response::json(StatusCode::OK, &crate::oauth::openid::discovery(app).await?);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    Ok(resp)
}
