//! Route handlers: one async function per route, each a thin expression that parses the
//! request, calls a flow, and renders the reply. Before a handler runs, the dispatcher counts
//! the request against its route's rate-limit class, then decides the route's access (both as
//! the route table declares them) and hands the handler the caller; afterwards it reports the
//! limit decision in `RateLimit-*` headers.

mod auth;
mod browser;
mod clients;
pub use clients::client_json;
mod ops;
pub use ops::OPENAPI;
mod roles;
mod users;
mod well_known;

use auth_actors::rate_limiter::Decision;
use hyper::header::HeaderValue;

use crate::app::App;
use crate::flows::authenticate::{self, Access, Caller};
use crate::flows::{limits, oauth};
use crate::http::router::{RouteDef, RouteId};
use crate::http::{ApiError, Request, Response};

/// Applies the route's rate limit and access, calls its handler, and adds the limit headers.
pub async fn dispatch(app: &App, route: &RouteDef, mut req: Request) -> Result<Response, ApiError> {
    let decision = limits::check(app, route.class, req.client_ip).await?;
    // The hosted pages answer every failure as a page.
    let render: fn(ApiError) -> Response =
        if route.access == Access::Browser { browser::error_response } else { ApiError::into_response };
    let mut resp = match decision {
        Some(d) if !d.allowed => render(ApiError::RateLimited { retry_after: d.retry_after }),
        _ => match authorize(app, route, &mut req).await {
            Ok(caller) => handle(app, route.id, req, caller).await.unwrap_or_else(render),
            Err(e) => render(e),
        },
    };
    if let Some(d) = decision {
        rate_limit_headers(&mut resp, &d);
    }
    Ok(resp)
}

/// The caller, as the route's access requires it: 401 or 403 otherwise, before the handler
/// runs. An introspector's subject token is read from the form only once the caller's own token
/// has passed its signature check, and both are checked in one Redis round trip.
async fn authorize(app: &App, route: &RouteDef, req: &mut Request) -> Result<Caller, ApiError> {
    let access = route.access;
    match access {
        Access::Introspector if req.bearer().is_some() => {
            let caller = authenticate::caller_claims(app, req.bearer())?;
            let form = auth::token_form(req).await?;
            Ok(authenticate::introspector(app, caller, &form.token).await?)
        }
        Access::Introspector => {
            let (presented, form) = auth::client_credentials(req).await?;
            if !presented.is_some() {
                return Err(ApiError::Unauthorized(authenticate::Rejection::Missing.to_string()));
            }
            let client =
                oauth::authenticate_client(app, presented, &auth::client(req), oauth::ClientUse::ResourceServer)
                    .await?;
            if client.method == auth_actors::db::clients::AuthMethod::None {
                // A public client proves nothing, so it may not learn about tokens (RFC 7662 §4).
                return Err(oauth::OAuthError::InvalidClient {
                    description: "a public client cannot introspect".into(),
                    basic: false,
                }
                .into());
            }
            let token = auth::required_token(&form)?;
            let subject = authenticate::verdict_for_client(app, &client, token).await?;
            Ok(Caller::Introspector { caller: authenticate::Introspecting::Client(client), subject })
        }
        Access::Client | Access::OptionalClient => {
            let (presented, form) = auth::client_credentials(req).await?;
            if access == Access::OptionalClient && !presented.is_some() {
                return Ok(Caller::Holder { form });
            }
            // Only the token endpoint counts against the client's request limit: a resource
            // server introspecting or revoking is not issued anything.
            let token_endpoint = route.id == RouteId::OAuthToken;
            let client_use = if token_endpoint { oauth::ClientUse::Token } else { oauth::ClientUse::ResourceServer };
            match oauth::authenticate_client(app, presented, &auth::client(req), client_use).await {
                Ok(client) => Ok(Caller::Client { client, form }),
                Err(e) => {
                    if token_endpoint {
                        oauth::count_token_request(app, &form, Err(&e));
                    }
                    Err(e.into())
                }
            }
        }
        Access::Browser => {
            let cookie = browser::session_cookie(app, req);
            Ok(Caller::Browser(crate::flows::authorize::browser_session(app, cookie.as_deref()).await?))
        }
        _ => Ok(authenticate::authorize(app, access, req.bearer()).await?),
    }
}

fn rate_limit_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    let secs = |dur: std::time::Duration| HeaderValue::from(dur.as_secs_f64().ceil() as u64);
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", secs(d.reset));
}

async fn handle(app: &App, route: RouteId, req: Request, caller: Caller) -> Result<Response, ApiError> {
    match route {
        RouteId::Healthz => ops::healthz(),
        RouteId::Readyz => ops::readyz(app).await,
        RouteId::Metrics if app.config.http.metrics_bind_addr.is_some() => {
            Err(ApiError::NotFound("metrics are served on METRICS_BIND_ADDR".into()))
        }
        RouteId::Metrics => Ok(ops::metrics(app)),
        RouteId::OpenApi => Ok(ops::openapi()),
        RouteId::Jwks => well_known::jwks(app, &req),
        RouteId::OpenidConfiguration | RouteId::AuthorizationServer => well_known::discovery(app).await,
        RouteId::Introspect | RouteId::OAuthIntrospect => auth::introspect(caller),
        RouteId::Revoke | RouteId::OAuthRevoke => auth::revoke(app, caller).await,
        RouteId::OAuthToken => auth::token(app, &req, caller).await,
        RouteId::CreateClient => clients::create(app, req, caller.principal()?).await,
        RouteId::ListClients => clients::list(app).await,
        RouteId::GetClient => clients::show(app, &req).await,
        RouteId::UpdateClient => clients::update(app, req, caller.principal()?).await,
        RouteId::DeleteClient => clients::delete(app, &req, caller.principal()?).await,
        RouteId::RotateClientSecret => clients::rotate_secret(app, req, caller.principal()?).await,
        RouteId::Signup => users::signup(app, req).await,
        RouteId::Login => auth::login_form(app, req).await,
        RouteId::LoginJson => auth::login_json(app, req).await,
        RouteId::Refresh => auth::refresh(app, req).await,
        RouteId::Logout => auth::logout(app, req).await,
        RouteId::LogoutAll => auth::logout_all(app, caller.principal()?).await,
        RouteId::LoginHistory => users::history(app, req, caller.principal()?).await,
        RouteId::UpdateProfile => users::update_profile(app, req, caller.principal()?).await,
        RouteId::DeleteUser => users::delete(app, req, caller.principal()?).await,
        RouteId::Sessions => users::sessions(app, caller.principal()?).await,
        RouteId::RevokeSession => users::revoke_session(app, req, caller.principal()?).await,
        RouteId::CreateRole => roles::create(app, req, caller.principal()?).await,
        RouteId::ListRoles => roles::list(app).await,
        RouteId::UpdateRole => roles::update(app, req, caller.principal()?).await,
        RouteId::DeleteRole => roles::delete(app, req, caller.principal()?).await,
        RouteId::AssignRole => roles::assign(app, req, caller.principal()?).await,
        RouteId::RemoveRole => roles::remove(app, req, caller.principal()?).await,
        RouteId::CheckRole => roles::check(app, req).await,
        RouteId::Me => roles::me(app, caller).await,
        RouteId::ListUserRoles => roles::users(app, req).await,
        RouteId::AdminEvents => roles::events(app, req).await,
        RouteId::Authorize | RouteId::SignIn => Ok(browser::authorize(app, req, caller).await),
        RouteId::Consent => Ok(browser::consent(app, req, caller).await),
        RouteId::EndSession | RouteId::ConfirmEndSession => Ok(browser::logout(app, req, caller).await),
        RouteId::UserInfo | RouteId::UserInfoPost => browser::userinfo(app, caller.principal()?).await,
        RouteId::Stylesheet => browser::stylesheet(&req),
        RouteId::ListConsents => browser::consents(app, caller.principal()?).await,
        RouteId::RevokeConsent => browser::revoke_consent(app, &req, caller.principal()?).await,
        #[cfg(feature = "test-hooks")]
        RouteId::TestFail => ops::test_fail(app, &req),
    }
}

/// The `/metrics` response, for the separate metrics listener.
pub fn render_metrics(app: &App) -> Response {
    ops::metrics(app)
}
