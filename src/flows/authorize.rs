//! The browser flow (OAuth 2.1 authorization code with PKCE, OpenID Connect): the
//! authorization endpoint, the hosted sign-in and consent, the code exchange, and sign-out.
//!
//! `GET /oauth2/authorize`:
//!
//! 1. **Client and redirect URI first.** An unknown client, or a `redirect_uri` that is not one
//!    of its registered URIs exactly (no prefix, no case folding, no trailing-slash leniency, no
//!    extra query; only a loopback `http` URI matches on any port, RFC 8252 §7.3, see
//!    [`crate::uri::redirect_matches`]), is answered with an error page and never redirected:
//!    there is nowhere safe to send it (no open redirect). The code is bound to the URI the
//!    request named, port included, and the exchange must name that one.
//! 2. **The rest of the request**, each error sent back to the client's redirect URI with
//!    `error`, `state` and `iss` (RFC 9207): `response_type=code` only; the client registered for
//!    the grant; the scopes among its own; a `code_challenge` with method `S256` (PKCE for every
//!    client; `plain` refused); `prompt` `none` or `login`; `max_age` a number.
//! 3. **Who is signed in.** The browser session cookie names a server-side session (a family of
//!    kind `browser`, listed in `/api/v1/sessions`, ended by logout-all). None, `prompt=login`, or
//!    one older than `max_age` means the sign-in page (`login_required` with `prompt=none`).
//! 4. **Consent.** A client that is not `first_party` needs the user's consent to the scopes it
//!    asks, remembered per user and client (`GET /api/v1/consents`, revocable); none yet means
//!    the consent page (`consent_required` with `prompt=none`).
//! 5. **The code**: 256 random bits, stored as its SHA-256 for 60 s, bound to the client, the
//!    redirect URI, the challenge, the scopes, the nonce and the time of sign-in; sent with
//!    `state` and `iss`.
//!
//! The sign-in form posts to `POST /oauth2/authorize`: its CSRF token must match the browser's
//! CSRF cookie; the password goes through the same checks as `/api/v1/auth/login` (per-IP
//! limit, account gate and lockout, argon2, failure record); success opens a browser session
//! and carries on at step 4. The consent form posts to `POST /oauth2/consent`.
//!
//! At the token endpoint, `grant_type=authorization_code` redeems a code once (a second use
//! fails and revokes the session the first one opened), checks the redirect URI and the PKCE
//! verifier, opens a session bound to the client (kind `oauth`), and answers the access token,
//! an ID token when `openid` was granted, and a refresh token when `offline_access` was.

use std::time::Duration;

use auth_actors::db::grants::{
    self, BrowserSession, Consent, Exchange, ExchangeCode, FindBrowserSession, GrantConsent, IssueCode, Refusal,
};
use auth_actors::db::sessions::{self, NewToken, RevokeOne, SessionKind, StartOutcome};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Client;
use super::error::{Dependency, FlowError};
use super::login::{self, LoginInput};
use super::oauth::{self, AuthenticatedClient, ClientEntry, OAuthError, OAuthForm, TokenResponse};
use super::tokens::{self, AccessClaims};
use crate::app::App;
use crate::authz::Cached;

/// How long a code lives.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// The longest `nonce` an authorization request may carry (it is stored with the code).
pub const MAX_NONCE_LEN: usize = 512;

/// The parameters of an authorization request, as they travel through the pages' forms.
pub const REQUEST_FIELDS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "response_mode",
];

/// A checked authorization request.
#[derive(Debug)]
pub struct Request {
    pub client: Cached<ClientEntry>,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Option<Prompt>,
    pub max_age: Option<i64>,
    /// The username the client suggests (OpenID Connect `login_hint`), to fill in.
    pub login_hint: Option<String>,
    /// The request's own parameters, to carry through a page's form.
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Never show a page: a code, or an error.
    None,
    /// Sign in again, whatever session there is.
    Login,
}

/// What the browser gets from a step of the flow.
#[derive(Debug)]
pub enum Step {
    /// Back to the client (a code, or an error it can handle).
    Redirect(String),
    /// The sign-in page (with the error of a failed attempt).
    SignIn { request: Request, login: String, error: Option<SignInError> },
    /// The consent page.
    Consent { request: Request, username: String, scopes: Vec<String> },
}

impl Step {
    /// The sign-in page, without an error: what a browser without a session is shown.
    pub fn is_sign_in_page(&self) -> bool {
        matches!(self, Step::SignIn { error: None, .. })
    }
}

/// Why a sign-in attempt failed, as the page tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInError {
    BadCredentials,
    /// Too many attempts: try again after this long.
    Throttled(Duration),
}

/// An error that is shown as a page, never sent back to the client.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("the application is not known to this service")]
    UnknownClient,
    #[error("the application asked to send you to an address it has not registered")]
    BadRedirectUri,
    #[error("this form has expired or was not sent from this site; go back to the application and try again")]
    BadCsrf,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl From<auth_actors::user_store::StoreError> for PageError {
    fn from(e: auth_actors::user_store::StoreError) -> Self {
        PageError::Flow(e.into())
    }
}

fn param<'a>(form: &'a OAuthForm, name: &str) -> Option<&'a str> {
    form.get(name)
}

/// The error response of RFC 6749 §4.1.2.1 (with `iss`, RFC 9207), at the client's URI.
fn error_redirect(app: &App, redirect_uri: &str, error: &str, description: &str, state: Option<&str>) -> String {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    let issuer = app.config.tokens.issuer.clone();
    pairs.push(("iss", &issuer));
    with_query(redirect_uri, &pairs)
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]` (and a challenge has the same shape).
fn valid_pkce(value: &str) -> bool {
    (43..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Which registration of the client a request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The current one (the cache under the current epoch, or PostgreSQL): for anything that
    /// sends the browser somewhere or issues a code.
    Current,
    /// One cached less than `AUTHZ_CACHE_TTL` ago, if there is one, without asking Redis: only
    /// to render the sign-in page for a browser without a session, which decides nothing (its
    /// form is checked again, against the current registration).
    Recent,
}

/// An authorization request whose client and redirect URI are known good.
pub enum Checked {
    /// Everything else is valid too.
    Valid(Request),
    /// Something else is wrong: the error goes back to the client, at this redirect URI.
    Back(String),
}

/// Step 1 and 2: the client and its redirect URI (errors are pages), then the rest (errors go
/// back to the client as a redirect, [`Checked::Back`]).
pub async fn check_request(app: &App, form: &OAuthForm, registration: Registration) -> Result<Checked, PageError> {
    let client_id = param(form, "client_id").ok_or(PageError::UnknownClient)?;
    if !super::clients::plausible_client_id(client_id) {
        return Err(PageError::UnknownClient);
    }
    let recent = match registration {
        Registration::Recent => app.clients.get_recent(client_id),
        Registration::Current => None,
    };
    let client = match recent {
        Some(client) => client,
        None => {
            let epoch = app.services.limiter.check_tokens(&[], true).await.map_err(FlowError::from)?.authz_epoch;
            oauth::client_entry(app, client_id, epoch.as_deref()).await?.ok_or(PageError::UnknownClient)?
        }
    };
    let redirect_uri = param(form, "redirect_uri").ok_or(PageError::BadRedirectUri)?;
    if !client.metadata().redirect_uris.iter().any(|r| crate::uri::redirect_matches(r, redirect_uri)) {
        return Err(PageError::BadRedirectUri);
    }
    let state = param(form, "state");
    let back = |error: &str, description: &str| {
        Ok(Checked::Back(error_redirect(app, redirect_uri, error, description, state)))
    };
    if param(form, "response_type") != Some("code") {
        return back("unsupported_response_type", "response_type must be code");
    }
    if param(form, "response_mode").is_some_and(|m| m != "query") {
        return back("invalid_request", "response_mode must be query");
    }
    if param(form, "request").is_some() {
        return back("request_not_supported", "request objects are not supported");
    }
    if param(form, "request_uri").is_some() {
        return back("request_uri_not_supported", "request_uri is not supported");
    }
    if !client.metadata().grant_types.iter().any(|g| g == "authorization_code") {
        return back("unauthorized_client", "the client is not registered for the authorization_code grant");
    }
    let scope = param(form, "scope").unwrap_or_default();
    let mut scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    let allowed: Vec<&str> = client.metadata().scope.split(' ').collect();
    if scopes.iter().any(|s| !allowed.contains(s)) {
        return back("invalid_scope", "a requested scope is not allowed for this client");
    }
    scopes.sort_unstable();
    scopes.dedup();
    let Some(code_challenge) = param(form, "code_challenge") else {
        return back("invalid_request", "code_challenge is required (PKCE)");
    };
    if param(form, "code_challenge_method") != Some("S256") {
        return back("invalid_request", "code_challenge_method must be S256");
    }
    if !valid_pkce(code_challenge) {
        return back("invalid_request", "malformed code_challenge");
    }
    let prompt = match param(form, "prompt") {
        None => None,
        Some("none") => Some(Prompt::None),
        Some("login") => Some(Prompt::Login),
        Some(_) => return back("invalid_request", "prompt must be none or login"),
    };
    let max_age = match param(form, "max_age") {
        None => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return back("invalid_request", "max_age must be a number of seconds"),
        },
    };
    // OpenID Connect Core §3.1.3.7: the nonce must come back in the ID token, so one that is
    // too long to store with the code is refused, never dropped.
    let nonce = param(form, "nonce");
    if nonce.is_some_and(|n| n.len() > MAX_NONCE_LEN) {
        return back("invalid_request", &format!("nonce must be at most {MAX_NONCE_LEN} characters"));
    }
    let fields =
        REQUEST_FIELDS.iter().filter_map(|name| param(form, name).map(|v| (name.to_string(), v.to_string()))).collect();
    Ok(Checked::Valid(Request {
        client,
        redirect_uri: redirect_uri.to_string(),
        scope: scopes.join(" "),
        state: state.map(str::to_string),
        nonce: nonce.map(str::to_string),
        code_challenge: code_challenge.to_string(),
        prompt,
        max_age,
        login_hint: param(form, "login_hint").filter(|h| h.len() <= 254).map(str::to_string),
        fields,
    }))
}

/// The browser session a cookie names, if it is live.
pub async fn browser_session(app: &App, cookie: Option<&str>) -> Result<Option<BrowserSession>, FlowError> {
    let Some(secret) = cookie.and_then(tokens::decode_refresh) else { return Ok(None) };
    Ok(app.services.users.run(FindBrowserSession { token_hash: tokens::refresh_hash(&secret) }).await?)
}

/// Steps 3 to 5 for a checked request and whoever is signed in (`fresh`: the user signed in
/// just now, so `prompt=login` and `max_age` are satisfied).
pub async fn decide(
    app: &App,
    request: Request,
    session: Option<BrowserSession>,
    fresh: bool,
) -> Result<Step, FlowError> {
    let state = request.state.clone();
    let back = |error: &str, description: &str| {
        Ok(Step::Redirect(error_redirect(app, &request.redirect_uri, error, description, state.as_deref())))
    };
    let now = OffsetDateTime::now_utc();
    let session = session.filter(|s| {
        fresh
            || (request.prompt != Some(Prompt::Login)
                && request.max_age.is_none_or(|max| (now - s.auth_time).whole_seconds() <= max))
    });
    let Some(session) = session else {
        if request.prompt == Some(Prompt::None) {
            return back("login_required", "the user is not signed in");
        }
        let login = request.login_hint.clone().unwrap_or_default();
        return Ok(Step::SignIn { request, login, error: None });
    };
    let scopes: Vec<String> = request.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
    if !request.client.metadata().first_party {
        let consent = Consent { user_id: session.user.id, client_id: request.client.id().to_string() };
        let given = app.services.users.run(consent).await?.unwrap_or_default();
        let given: Vec<&str> = given.split(' ').collect();
        if scopes.iter().any(|s| !given.contains(&s.as_str())) {
            if request.prompt == Some(Prompt::None) {
                return back("consent_required", "the user has not consented to this client");
            }
            return Ok(Step::Consent { request, username: session.user.username, scopes });
        }
    }
    Ok(Step::Redirect(issue_code(app, &request, &session).await?))
}

/// Step 5: a code for the signed-in user, and the redirect that carries it.
async fn issue_code(app: &App, request: &Request, session: &BrowserSession) -> Result<String, FlowError> {
    let code = tokens::new_refresh_secret()?;
    let secret = tokens::decode_refresh(&code).ok_or(FlowError::Unavailable(Dependency::Randomness))?;
    let issue = IssueCode {
        code_hash: tokens::refresh_hash(&secret),
        client_id: request.client.id().to_string(),
        user_id: session.user.id,
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        auth_time: session.auth_time,
        ttl: CODE_TTL,
    };
    app.services.users.run(issue).await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = &request.state {
        pairs.push(("state", state));
    }
    let issuer = app.config.tokens.issuer.clone();
    pairs.push(("iss", &issuer));
    Ok(with_query(&request.redirect_uri, &pairs))
}

/// A browser session just opened by a sign-in: its cookie value, and the session.
pub struct SignedIn {
    pub cookie: String,
    pub session: BrowserSession,
}

/// `POST /oauth2/authorize`: the sign-in form. A failed attempt is the sign-in page again, with
/// its error at the password field.
pub async fn sign_in(
    app: &App,
    request: Request,
    username: String,
    password: String,
    client: &Client,
) -> Result<(Step, Option<SignedIn>), FlowError> {
    let input = LoginInput { username: username.clone(), password };
    let checked = match login::check_password(app, input, client).await {
        Ok(c) => c,
        Err(FlowError::BadCredentials) => {
            return Ok((Step::SignIn { request, login: username, error: Some(SignInError::BadCredentials) }, None));
        }
        Err(FlowError::Throttled { retry_after }) => {
            let error = Some(SignInError::Throttled(retry_after));
            return Ok((Step::SignIn { request, login: username, error }, None));
        }
        Err(e) => return Err(e),
    };
    let ttl = app.config.oauth.browser_session_ttl;
    let (cookie, session) = login::new_session(&checked, SessionKind::Browser, ttl, client)?;
    let family = session.family_id;
    if app.services.users.run(sessions::Start(session)).await? == StartOutcome::CredentialsChanged {
        let error = Some(SignInError::BadCredentials);
        return Ok((Step::SignIn { request, login: username, error }, None));
    }
    app.metrics
        .logins
        .get_or_create(&crate::metrics::OutcomeLabels { outcome: crate::metrics::Outcome::success })
        .inc();
    let session = BrowserSession { family_id: family, user: checked.user, auth_time: OffsetDateTime::now_utc() };
    let step = decide(app, request, Some(session.clone()), true).await?;
    Ok((step, Some(SignedIn { cookie, session })))
}

/// `POST /oauth2/consent`: allow (remembered, then a code) or deny (`access_denied`).
pub async fn consent(
    app: &App,
    request: Request,
    session: Option<BrowserSession>,
    allow: bool,
) -> Result<Step, FlowError> {
    let Some(session) = session else {
        return Ok(Step::SignIn { request, login: String::new(), error: None });
    };
    if !allow {
        let uri = error_redirect(
            app,
            &request.redirect_uri,
            "access_denied",
            "the user denied access",
            request.state.as_deref(),
        );
        return Ok(Step::Redirect(uri));
    }
    let grant = GrantConsent {
        user_id: session.user.id,
        client_id: request.client.id().to_string(),
        scope: request.scope.clone(),
    };
    app.services.users.run(grant).await?;
    decide(app, request, Some(session), true).await
}

/// The claims of an ID token (OpenID Connect Core §2), with the user's claims by scope.
#[derive(Debug, Serialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub azp: String,
    pub at_hash: String,
    pub sid: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// `at_hash`: the left half of the SHA-256 of the access token, base64url (both RS256 and ES256
/// hash with SHA-256).
pub fn at_hash(access_token: &str) -> String {
    let d = digest(&SHA256, access_token.as_bytes());
    B64.encode(&d.as_ref()[..16])
}

/// RFC 7636 §4.6: the challenge a verifier answers, `BASE64URL(SHA256(code_verifier))`.
fn s256(verifier: &str) -> String {
    B64.encode(digest(&SHA256, verifier.as_bytes()).as_ref())
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// `grant_type=authorization_code`; see the module documentation.
pub async fn exchange(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
    request: &Client,
) -> Result<TokenResponse, OAuthError> {
    let invalid = |d: &str| OAuthError::InvalidGrant(d.into());
    let code = form.get("code").ok_or_else(|| OAuthError::InvalidRequest("code is required".into()))?;
    let redirect_uri =
        form.get("redirect_uri").ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is required".into()))?;
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| OAuthError::InvalidRequest("code_verifier is required (PKCE)".into()))?;
    if !valid_pkce(verifier) {
        return Err(OAuthError::InvalidRequest("code_verifier must be 43 to 128 unreserved characters".into()));
    }
    let secret = tokens::decode_refresh(code).ok_or_else(|| invalid("invalid or expired code"))?;
    let t = &app.config.tokens;
    let refresh_token = tokens::new_refresh_secret()?;
    let refresh_secret =
        tokens::decode_refresh(&refresh_token).ok_or(FlowError::Unavailable(Dependency::Randomness))?;
    let family = Uuid::now_v7();
    let exchange = ExchangeCode {
        code_hash: tokens::refresh_hash(&secret),
        client_id: client.id().to_string(),
        redirect_uri: redirect_uri.to_string(),
        challenge: s256(verifier),
        family_id: family,
        token: NewToken {
            id: Uuid::now_v7(),
            hash: tokens::refresh_hash(&refresh_secret),
            expires_at: OffsetDateTime::now_utc() + t.refresh_ttl,
        },
        refresh_allowed: client.entry.metadata().grant_types.iter().any(|g| g == "refresh_token"),
        access_ttl: Duration::from_secs(oauth::ttl_of(app, client)),
        ip_address: request.ip_string(),
        user_agent: request.user_agent.clone(),
    };
    let (user, scope, nonce, auth_time, offline) = match app.services.users.run(exchange).await? {
        Exchange::Started { user, scope, nonce, auth_time, offline } => (user, scope, nonce, auth_time, offline),
        Exchange::Refused(Refusal::RedirectUri) => {
            return Err(invalid("redirect_uri differs from the authorization request's"));
        }
        Exchange::Refused(Refusal::Verifier) => {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        Exchange::Refused(Refusal::UserGone) => return Err(invalid("the user can no longer sign in")),
        Exchange::Replayed { user_id, family_id } => {
            if let Some(family_id) = family_id {
                app.services.users.run(RevokeOne { user_id, family_id }).await?;
                super::logout::fence_sessions(app, user_id, vec![family_id]).await?;
            }
            return Err(invalid("the code was already used; the tokens it issued are revoked"));
        }
        Exchange::Invalid => return Err(invalid("invalid or expired code")),
    };
    let to = tokens::IssuedTo {
        client_id: client.id(),
        audience: oauth::audience_of(client),
        scope: scope.clone(),
        ttl: oauth::ttl_of(app, client),
    };
    let (access_token, ttl) = tokens::issue_access(app, &user, family, Some(to)).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let id_token = match has_scope(&scope, "openid") {
        false => None,
        true => {
            let id = IdClaims {
                iss: t.issuer.clone(),
                sub: user.id.to_string(),
                aud: client.id().to_string(),
                exp: now + ttl as i64,
                iat: now,
                nbf: now,
                auth_time: auth_time.unix_timestamp(),
                nonce,
                azp: client.id().to_string(),
                at_hash: at_hash(&access_token),
                sid: family,
                preferred_username: has_scope(&scope, "profile").then(|| user.username.clone()),
                email: has_scope(&scope, "email").then(|| user.email.clone()),
                email_verified: has_scope(&scope, "email").then_some(false),
                roles: has_scope(&scope, "roles").then(|| user.roles.clone()),
            };
            Some(app.services.keys.sign("JWT", id).await.map_err(FlowError::from)?)
        }
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: Some(scope).filter(|s| !s.is_empty()),
        refresh_token: offline.then_some(refresh_token),
        id_token,
    })
}

/// The userinfo answer (OpenID Connect Core §5.3) for a verified access token: the claims its
/// scopes allow, of the user as they are now.
pub async fn userinfo(app: &App, claims: &AccessClaims) -> Result<serde_json::Value, FlowError> {
    let user_id: Uuid = claims.sub.parse().map_err(|_| FlowError::Token(super::authenticate::Rejection::Invalid))?;
    let user = app
        .services
        .users
        .run(auth_actors::db::users::Get { id: user_id })
        .await?
        .filter(|u| u.is_active)
        .ok_or(FlowError::Token(super::authenticate::Rejection::Revoked))?;
    let scope = claims.scope.as_deref().unwrap_or_default();
    let mut answer = serde_json::json!({ "sub": user.id });
    if has_scope(scope, "profile") {
        answer["preferred_username"] = user.username.into();
    }
    if has_scope(scope, "email") {
        answer["email"] = user.email.into();
        answer["email_verified"] = false.into();
    }
    if has_scope(scope, "roles") {
        answer["roles"] = serde_json::json!(user.roles);
    }
    Ok(answer)
}

/// Checks the parameters of an RP-initiated sign-out, then tells where it may send the browser:
/// a `post_logout_redirect_uri` registered by the client that the ID token hint (or
/// `client_id`) names, with `state`.
///
/// A hint, when given, must be an ID token this service signed (OpenID Connect RP-Initiated
/// Logout §2: the OP MUST verify it), and a `client_id` given beside it must be its audience
/// (§3). Either failure is the error page, never a redirect and never a silent fall-back to the
/// other parameter: otherwise a hint of one client would send the browser to another's address.
pub async fn post_logout_target(app: &App, form: &OAuthForm) -> Result<Option<String>, PageError> {
    let hinted = match form.get("id_token_hint") {
        Some(hint) => Some(hinted_client(app, hint)?),
        None => None,
    };
    if let (Some(audience), Some(client_id)) = (&hinted, form.get("client_id"))
        && audience != client_id
    {
        return Err(PageError::BadRequest("the client_id is not the client the id_token_hint was issued to".into()));
    }
    let Some(uri) = form.get("post_logout_redirect_uri") else { return Ok(None) };
    let client_id = hinted.or_else(|| form.get("client_id").map(str::to_string)).ok_or_else(|| {
        PageError::BadRequest("post_logout_redirect_uri needs an id_token_hint or a client_id".into())
    })?;
    if !super::clients::plausible_client_id(&client_id) {
        return Err(PageError::UnknownClient);
    }
    let entry = oauth::client_entry(app, &client_id, None).await?.ok_or(PageError::UnknownClient)?;
    if !entry.metadata().post_logout_redirect_uris.iter().any(|r| r == uri) {
        return Err(PageError::BadRedirectUri);
    }
    Ok(Some(match form.get("state") {
        Some(state) => with_query(uri, &[("state", state)]),
        None => uri.to_string(),
    }))
}

/// The client an ID token hint was issued to (its `aud`), if this service signed it as an ID
/// token (`typ: JWT`, so an access token is no hint). A hint names the client even after it
/// expired (RP-Initiated Logout §2): it is accepted up to a browser session's lifetime later.
fn hinted_client(app: &App, hint: &str) -> Result<String, PageError> {
    let rules = auth_actors::keys::VerifyRules {
        typ: "JWT",
        audience: None,
        leeway: app.config.oauth.browser_session_ttl,
        ..super::authenticate::rules(app)
    };
    let claims = match app.services.keys.verify::<serde_json::Value>(hint, &rules) {
        Ok(claims) => claims,
        Err(auth_actors::key_manager::SignError::Call(e)) => return Err(PageError::Flow(e.into())),
        Err(_) => return Err(PageError::BadRequest("the id_token_hint is not an ID token this service issued".into())),
    };
    claims
        .get("aud")
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or_else(|| PageError::BadRequest("the id_token_hint names no client".into()))
}

/// Ends a browser session (its cookie) and fences off what it issued directly.
pub async fn sign_out(app: &App, session: &BrowserSession) -> Result<(), FlowError> {
    let revoke = sessions::RevokeOne { user_id: session.user.id, family_id: session.family_id };
    app.services.users.run(revoke).await?;
    super::logout::fence_sessions(app, session.user.id, vec![session.family_id]).await
}

/// The consents a user has given.
pub async fn consents(app: &App, user_id: Uuid) -> Result<Vec<grants::ConsentRow>, FlowError> {
    Ok(app.services.users.run(grants::ListConsents { user_id }).await?)
}

/// Takes back a consent; the client's sessions of that user end with it.
pub async fn revoke_consent(app: &App, user_id: Uuid, client_id: &str) -> Result<(), FlowError> {
    let revoke = grants::RevokeConsent { user_id, client_id: client_id.to_string() };
    let sessions = app.services.users.run(revoke).await?.ok_or(FlowError::NotFound(super::error::Entity::Client))?;
    super::logout::fence_sessions(app, user_id, sessions).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_pkce(verifier));
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(!valid_pkce("short"));
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_sha_256() {
        assert_eq!(at_hash("abc").len(), 22);
        assert_ne!(at_hash("abc"), at_hash("abd"));
    }

    #[test]
    fn redirects_append_to_an_existing_query() {
        assert_eq!(with_query("https://a.example/cb?x=1", &[("code", "c")]), "https://a.example/cb?x=1&code=c");
        assert_eq!(with_query("https://a.example/cb", &[("state", "a b")]), "https://a.example/cb?state=a+b");
    }
}
