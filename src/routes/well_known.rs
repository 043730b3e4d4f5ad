//! The JWKS, served from the KeyManager's cached document.

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
