//! Route handlers: one async function per route, each a thin expression that parses the
//! request, calls a flow or an actor handle, and renders the reply. Before a handler runs, the
//! dispatcher counts the request against its route class's rate limit and afterwards reports
//! the decision in `RateLimit-*` headers.

mod auth;
mod ops;
pub use ops::OPENAPI;
mod roles;
mod users;
mod well_known;

use auth_actors::rate_limiter::Decision;
use hyper::header::HeaderValue;

use crate::app::App;
use crate::flows::limits::{self, Class};
use crate::http::router::RouteId;
use crate::http::{ApiError, Request, Response};

fn class(route: RouteId) -> Class {
    match route {
        RouteId::Healthz
        | RouteId::Readyz
        | RouteId::Metrics
        | RouteId::OpenApi
        | RouteId::Jwks
        | RouteId::OpenidConfiguration
        | RouteId::AuthorizationServer => Class::Exempt,
        #[cfg(feature = "test-hooks")]
        RouteId::TestFail => Class::Exempt,
        RouteId::Signup => Class::Signup,
        RouteId::Login | RouteId::LoginJson => Class::Login,
        RouteId::Refresh => Class::Refresh,
        _ => Class::Default,
    }
}

/// Applies the route's rate limit, calls its handler, and adds the limit headers.
pub async fn dispatch(app: &App, route: RouteId, req: Request) -> Result<Response, ApiError> {
    let decision = limits::check(app, class(route), req.client_ip).await?;
    let mut resp = match decision {
        Some(d) if !d.allowed => ApiError::RateLimited { retry_after: d.retry_after }.into_response(),
        _ => handle(app, route, req).await.unwrap_or_else(ApiError::into_response),
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

async fn handle(app: &App, route: RouteId, req: Request) -> Result<Response, ApiError> {
    match route {
        RouteId::Healthz => ops::healthz(),
        RouteId::Readyz => ops::readyz(app).await,
        RouteId::Metrics if app.config.http.metrics_bind_addr.is_some() => {
            Err(ApiError::NotFound("metrics are served on METRICS_BIND_ADDR".into()))
        }
        RouteId::Metrics => Ok(ops::metrics(app)),
        RouteId::OpenApi => Ok(ops::openapi()),
        RouteId::Jwks => well_known::jwks(app, &req),
        RouteId::OpenidConfiguration | RouteId::AuthorizationServer => well_known::discovery(app),
        RouteId::Introspect => auth::introspect(app, req).await,
        RouteId::Revoke => auth::revoke(app, req).await,
        RouteId::Signup => users::signup(app, req).await,
        RouteId::Login => auth::login_form(app, req).await,
        RouteId::LoginJson => auth::login_json(app, req).await,
        RouteId::Refresh => auth::refresh(app, req).await,
        RouteId::Logout => auth::logout(app, req).await,
        RouteId::LogoutAll => auth::logout_all(app, req).await,
        RouteId::LoginHistory => users::history(app, req).await,
        RouteId::UpdateProfile => users::update_profile(app, req).await,
        RouteId::DeleteUser => users::delete(app, req).await,
        RouteId::Sessions => users::sessions(app, req).await,
        RouteId::RevokeSession => users::revoke_session(app, req).await,
        RouteId::CreateRole => roles::create(app, req).await,
        RouteId::ListRoles => roles::list(app, req).await,
        RouteId::UpdateRole => roles::update(app, req).await,
        RouteId::DeleteRole => roles::delete(app, req).await,
        RouteId::AssignRole => roles::assign(app, req).await,
        RouteId::RemoveRole => roles::remove(app, req).await,
        RouteId::CheckRole => roles::check(app, req).await,
        RouteId::Me => roles::me(app, req).await,
        RouteId::ListUserRoles => roles::users(app, req).await,
        RouteId::AdminEvents => roles::events(app, req).await,
        #[cfg(feature = "test-hooks")]
        RouteId::TestFail => ops::test_fail(app, &req),
    }
}

/// The `/metrics` response, for the separate metrics listener.
pub fn render_metrics(app: &App) -> Response {
    ops::metrics(app)
}
