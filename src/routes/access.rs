//! Who may call a route, decided in one place. Every entry of the route table
//! ([`super::table`]) names the handler it calls, and the handler's kind says what it needs:
//! [`call`] reads and checks exactly that from the request (a Bearer token and its user's roles
//! now, client credentials, the browser session cookie) and hands the handler a caller of the
//! type it asks for, so a handler cannot be reached without it, and cannot ask for a caller its
//! route does not check.
//!
//! - A Bearer token is checked by the verifier of [`crate::flows::authenticate`] (signature,
//!   claims, revocation, the user's standing now); a token issued to an OAuth client must also be
//!   meant for this service's own API (SPEC §7).
//! - An introspector's subject token is read from the form only once the caller's own token has
//!   passed its signature check, and both are checked in one Redis round trip.
//! - Client credentials are checked by [`crate::oauth::client_auth`]; only the token endpoint
//!   counts against the client's request limit.
//! - The hosted pages get the browser session their cookie names, if it is live.
//!
//! Architecture Invariant: no handler checks a token, a role or client credentials itself.

use std::future::Future;
use std::pin::Pin;

use auth_actors::db::clients::AuthMethod;
use auth_actors::db::sessions::BrowserSession;
use serde::Deserialize;

use crate::app::App;
use crate::flows::authenticate::{self, Principal, Subject, Verdict};
use crate::flows::error::{FlowError, Rejection};
use crate::http::{ApiError, Request, Response};
use crate::oauth::client_auth::{self, AuthenticatedClient, ClientUse, Presented};
use crate::oauth::introspection::verdict_for_client;
use crate::oauth::protocol::{OAuthError, OAuthForm};
use crate::oauth::{authorize, token};

/// Who may call a route: what the kind of its [`Handler`] asks for (see [`Handler::access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (probes, documents, signup, login, refresh, logout, revocation by token holders).
    Public,
    /// A valid access token of an active user.
    Bearer,
    /// A valid token if one is sent; anyone else is the guest.
    OptionalBearer,
    /// A Bearer of a user who holds `admin` now.
    Admin,
    /// A Bearer of a user who holds `admin` or `service` now.
    AdminOrService,
    /// [`Access::AdminOrService`], or an authenticated OAuth client (a resource server, RFC
    /// 7662 §2.1); the request's `token` form field (the subject of an introspection) is
    /// verified with the caller (in the same Redis round trip, for a Bearer caller).
    Introspector,
    /// An authenticated OAuth client (RFC 6749 §2.3): the token endpoint, OAuth revocation.
    Client,
    /// Anyone; a client that presents credentials must authenticate (revocation by a token's
    /// holder, or by its client).
    OptionalClient,
    /// Anyone, with the browser session their session cookie names, if it is live (the hosted
    /// pages of the browser flow; their forms carry a CSRF token).
    Browser,
    /// A valid access token of this issuer for any audience, issued to a user who is active now,
    /// with scope `openid` (OpenID Connect userinfo; RFC 6750 errors).
    UserInfo,
}

impl Access {
    /// The roles this access needs, if any.
    pub fn roles(self) -> Option<&'static [&'static str]> {
        match self {
            Access::Admin => Some(&["admin"]),
            Access::AdminOrService | Access::Introspector => Some(&["admin", "service"]),
            Access::Public
            | Access::Bearer
            | Access::OptionalBearer
            | Access::Client
            | Access::OptionalClient
            | Access::Browser
            | Access::UserInfo => None,
        }
    }
}

/// What a handler answers.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;
/// What a hosted page's handler answers: a page, whatever happened.
pub type PageReply<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;
/// A handler that receives the caller `C` its access produces.
pub type Serve<C> = for<'a> fn(&'a App, Request, C) -> Reply<'a>;

/// A route's handler, by the caller it receives; the kind is the route's access.
pub enum Handler {
    /// [`Access::Public`]: anyone.
    Public(for<'a> fn(&'a App, Request) -> Reply<'a>),
    /// [`Access::OptionalBearer`]: the user of a valid token, if one was sent.
    OptionalBearer(Serve<Option<Principal>>),
    /// [`Access::Bearer`].
    Bearer(Serve<Principal>),
    /// [`Access::Admin`].
    Admin(Serve<Principal>),
    /// [`Access::AdminOrService`].
    AdminOrService(Serve<Principal>),
    /// [`Access::UserInfo`].
    UserInfo(Serve<Principal>),
    /// [`Access::Introspector`].
    Introspector(Serve<Introspection>),
    /// [`Access::Client`] at the token endpoint: the request counts against the client's limit.
    Token(Serve<ClientCall>),
    /// [`Access::Client`] of a resource server (revocation).
    Client(Serve<ClientCall>),
    /// [`Access::OptionalClient`].
    OptionalClient(Serve<Revocation>),
    /// [`Access::Browser`]: the hosted pages, which answer every failure as a page.
    Browser(for<'a> fn(&'a App, Request, Option<BrowserSession>) -> PageReply<'a>),
}

impl Handler {
    /// The access this handler's kind stands for.
    pub const fn access(&self) -> Access {
        match self {
            Handler::Public(_) => Access::Public,
            Handler::OptionalBearer(_) => Access::OptionalBearer,
            Handler::Bearer(_) => Access::Bearer,
            Handler::Admin(_) => Access::Admin,
            Handler::AdminOrService(_) => Access::AdminOrService,
            Handler::UserInfo(_) => Access::UserInfo,
            Handler::Introspector(_) => Access::Introspector,
            Handler::Token(_) | Handler::Client(_) => Access::Client,
            Handler::OptionalClient(_) => Access::OptionalClient,
            Handler::Browser(_) => Access::Browser,
        }
    }
}

/// An introspector and the verdict on the token it asked about.
#[derive(Debug)]
pub struct Introspection {
    pub caller: Introspecting,
    pub subject: Verdict,
}

/// Who is introspecting.
#[derive(Debug)]
pub enum Introspecting {
    /// A user holding admin or service, by Bearer token.
    User(Principal),
    /// An OAuth client (a resource server).
    Client(AuthenticatedClient),
}

/// An authenticated OAuth client and the form it sent.
#[derive(Debug)]
pub struct ClientCall {
    pub client: AuthenticatedClient,
    pub form: OAuthForm,
}

/// A request that a client may authenticate (revocation): the client, if it presented
/// credentials, and the form.
#[derive(Debug)]
pub struct Revocation {
    pub client: Option<AuthenticatedClient>,
    pub form: OAuthForm,
}

/// Decides the handler's access for this request and calls it with the caller that produces:
/// 401 or 403 (or the protocol's `invalid_client`) otherwise, before the handler runs.
pub async fn call(app: &App, handler: &Handler, mut req: Request) -> Result<Response, ApiError> {
    match *handler {
        Handler::Public(h) => h(app, req).await,
        Handler::OptionalBearer(h) => {
            let caller = match req.bearer() {
                None => None,
                Some(token) => match authenticate::verify(app, token).await {
                    Ok(p) => Some(p),
                    Err(FlowError::Token(_)) => None,
                    Err(outage) => return Err(outage.into()),
                },
            };
            h(app, req, caller).await
        }
        Handler::Bearer(h) => {
            let caller = authenticate::authenticate(app, req.bearer()).await?;
            h(app, req, caller).await
        }
        Handler::Admin(h) | Handler::AdminOrService(h) => {
            let caller = authenticate::authenticate(app, req.bearer()).await?;
            require(&caller, handler.access().roles().unwrap_or_default())?;
            h(app, req, caller).await
        }
        Handler::UserInfo(h) => {
            let caller = userinfo_caller(app, req.bearer()).await?;
            h(app, req, caller).await
        }
        Handler::Introspector(h) => {
            let caller = introspector(app, &mut req).await?;
            h(app, req, caller).await
        }
        Handler::Token(h) => {
            let caller = client(app, &mut req, ClientUse::Token).await?;
            h(app, req, caller).await
        }
        Handler::Client(h) => {
            let caller = client(app, &mut req, ClientUse::ResourceServer).await?;
            h(app, req, caller).await
        }
        Handler::OptionalClient(h) => {
            let (presented, form) = client_credentials(&mut req).await?;
            let client = match presented.is_some() {
                false => None,
                true => Some(
                    client_auth::authenticate_client(app, presented, &req.peer(), ClientUse::ResourceServer).await?,
                ),
            };
            h(app, req, Revocation { client, form }).await
        }
        Handler::Browser(h) => {
            let cookie = crate::oauth::routes::pages::session_cookie(app, &req);
            let session = authorize::browser_session(app, cookie.as_deref()).await?;
            Ok(h(app, req, session).await)
        }
    }
}

fn require(caller: &Principal, roles: &'static [&'static str]) -> Result<(), FlowError> {
    if caller.roles.iter().any(|r| roles.contains(&r.as_str())) { Ok(()) } else { Err(FlowError::MissingRole(roles)) }
}

/// [`Access::UserInfo`]: a user's access token, whatever its audience, verified as introspection
/// verifies its subject (revocation, the user's standing now), granted `openid`.
async fn userinfo_caller(app: &App, bearer: Option<&str>) -> Result<Principal, FlowError> {
    let token = bearer.ok_or(FlowError::Token(Rejection::Missing))?;
    match authenticate::verdict(app, token).await? {
        Verdict::Active(Subject::User(p)) => {
            let scope = p.claims.scope.as_deref().unwrap_or_default();
            if !scope.split(' ').any(|s| s == "openid") {
                return Err(FlowError::InsufficientScope("openid"));
            }
            Ok(p)
        }
        Verdict::Active(Subject::Client(_)) => Err(FlowError::Token(Rejection::Invalid)),
        Verdict::Inactive(rejection) => Err(FlowError::Token(rejection)),
    }
}

/// [`Access::Introspector`]: a Bearer caller's token is checked (signature and claims) before the
/// body is read, so that an unauthenticated caller is refused at once; then it must hold admin
/// or service now, and the subject is verified with it. Without a Bearer token, the caller must
/// be a confidential client, to which only the tokens it serves can be active.
async fn introspector(app: &App, req: &mut Request) -> Result<Introspection, ApiError> {
    if let Some(token) = req.bearer() {
        let caller = authenticate::verify_claims(app, token)?;
        let form = token_form(req).await?;
        let (caller, subject) = authenticate::verify_with_subject(app, caller, &form.token).await?;
        require(&caller, Access::Introspector.roles().unwrap_or_default())?;
        return Ok(Introspection { caller: Introspecting::User(caller), subject });
    }
    let (presented, form) = client_credentials(req).await?;
    if !presented.is_some() {
        return Err(ApiError::Unauthorized(Rejection::Missing.to_string()));
    }
    let client = client_auth::authenticate_client(app, presented, &req.peer(), ClientUse::ResourceServer).await?;
    if client.method == AuthMethod::None {
        // A public client proves nothing, so it may not learn about tokens (RFC 7662 §4).
        return Err(OAuthError::InvalidClient {
            description: "a public client cannot introspect".into(),
            basic: false,
        }
        .into());
    }
    let subject = verdict_for_client(app, &client, required_token(&form)?).await?;
    Ok(Introspection { caller: Introspecting::Client(client), subject })
}

/// [`Access::Client`]: the client the request authenticates as. A refusal at the token endpoint
/// is counted as a token request.
async fn client(app: &App, req: &mut Request, client_use: ClientUse) -> Result<ClientCall, ApiError> {
    let (presented, form) = client_credentials(req).await?;
    match client_auth::authenticate_client(app, presented, &req.peer(), client_use).await {
        Ok(client) => Ok(ClientCall { client, form }),
        Err(e) => {
            if client_use == ClientUse::Token {
                token::count_token_request(app, &form, Err(&e));
            }
            Err(e.into())
        }
    }
}

/// The form of introspection by a Bearer caller (RFC 7662 §2.1).
#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
    /// Accepted as RFC 7662 defines it; the token's own shape tells its kind.
    #[serde(rename = "token_type_hint")]
    _hint: Option<String>,
}

async fn token_form(req: &mut Request) -> Result<TokenForm, ApiError> {
    let form: TokenForm = req.form().await?;
    if form.token.is_empty() {
        return Err(ApiError::BadRequest("the token parameter is required".into()));
    }
    Ok(form)
}

/// The `token` of an introspection or revocation form (RFC 7662 §2.1, RFC 7009 §2.1).
pub fn required_token(form: &OAuthForm) -> Result<&str, ApiError> {
    form.get("token").ok_or_else(|| OAuthError::InvalidRequest("the token parameter is required".into()).into())
}

/// The form of a client-authenticated request and the client credentials it presents (in it,
/// or in HTTP Basic). A form that cannot be read (malformed, a control character) is the
/// protocol's `invalid_request` (RFC 6749 §5.2).
async fn client_credentials(req: &mut Request) -> Result<(Presented, OAuthForm), ApiError> {
    let pairs: Vec<(String, String)> = req.form().await.map_err(|e| match e {
        ApiError::BadRequest(d) | ApiError::Unprocessable(d) => OAuthError::InvalidRequest(d).into(),
        other => other,
    })?;
    let form = OAuthForm::new(pairs)?;
    let presented = client_auth::presented(req.header(hyper::header::AUTHORIZATION), &form)?;
    Ok((presented, form))
}
