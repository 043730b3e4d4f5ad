//! Route handlers: one async function per route, each a thin expression that parses the
//! request, calls a flow, and renders the reply. [`dispatch`] counts the request against its
//! route's rate-limit class, then [`access::call`] decides the route's access and calls the
//! handler with the caller it produces; afterwards the limit decision goes out in `RateLimit-*`
//! headers. The provider's handlers are in [`crate::oauth::routes`].

pub mod access;
mod account_pages;
mod auth;
mod email;
mod mfa;
mod ops;
pub use ops::OPENAPI;
mod password;
mod roles;
pub mod table;
mod users;
mod webauthn;
mod well_known;

use auth_actors::redis::rate::Decision;
use hyper::header::HeaderValue;

use crate::app::App;
use crate::flows::limits;
use crate::http::{ApiError, Request, Response};
use crate::oauth::routes::pages;
use access::Handler;
use table::RouteDef;

/// Applies the route's rate limit and access, calls its handler, and adds the limit headers.
pub async fn dispatch(app: &App, route: &RouteDef, req: Request) -> Result<Response, ApiError> {
    let decision = limits::check(app, route.class, req.peer_ip).await?;
    // The hosted pages answer every failure as a page.
    let render: fn(ApiError) -> Response =
        if matches!(route.handler, Handler::Browser(_)) { pages::error_response } else { ApiError::into_response };
    let mut resp = match decision {
        Some(d) if !d.allowed => render(ApiError::RateLimited { retry_after: d.retry_after }),
        _ => access::call(app, &route.handler, req).await.unwrap_or_else(render),
    };
    if let Some(d) = decision {
        rate_limit_headers(&mut resp, &d);
    }
    Ok(resp)
}

fn rate_limit_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    let secs = |dur: std::time::Duration| HeaderValue::from(dur.as_secs_f64().ceil() as u64);
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", secs(d.reset));
}

/// The `/metrics` response, for the separate metrics listener.
pub fn render_metrics(app: &App) -> Response {
    ops::metrics(app)
}
