//! The browser flow (OAuth 2.1 authorization code with PKCE, OpenID Connect): the
//! authorization endpoint, the hosted sign-in and consent, and the consents a user has given.
//! The code it issues is redeemed at the token endpoint ([`super::token::authorization_code`]).
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
//!    client; `plain` refused); `prompt` `none` or `login`; `max_age` a number; `acr_values` at
//!    most 1024 characters (space-separated; only the multi-factor one changes the flow, step 3).
//! 3. **Who is signed in.** The browser session cookie names a server-side session (a family of
//!    kind `browser`, listed in `/api/v1/sessions`, ended by logout-all). None, `prompt=login`, or
//!    one older than `max_age` means the sign-in page (`login_required` with `prompt=none`).
//!    **Step-up.** A request that needs the multi-factor `acr` (`acr_values` names it, or the
//!    client is registered `require_mfa`) is met only by a session whose `amr` has `mfa`: with
//!    another session, a user who has a second factor gets the sign-in page again
//!    (`login_required` with `prompt=none`), and one who has none the page that sends them to
//!    set one up at `/account/security`, which links back to the request
//!    (`interaction_required` with `prompt=none`).
//! 4. **Consent.** A client that is not `first_party` needs the user's consent to the scopes it
//!    asks, remembered per user and client (`GET /api/v1/consents`, revocable); none yet means
//!    the consent page (`consent_required` with `prompt=none`).
//! 5. **The code**: 256 random bits, stored as its SHA-256 for 60 s, bound to the client, the
//!    redirect URI, the challenge, the scopes, the nonce and the time of sign-in; sent with
//!    `state` and `iss`.
//!
//! A browser without a session is checked first against `Registration::Recent`: the client as
//! cached less than `AUTHZ_CACHE_TTL` ago under any epoch, without the Redis read. If that leads
//! to the plain sign-in page, the page is rendered from it — it decides nothing, and its form is
//! checked again against the current registration. Anything else (an error page, an error
//! redirect, `prompt=none`) is decided again on `Registration::Current`, so no redirect ever goes
//! to a URI on the strength of a stale registration.
//!
//! The sign-in form posts to `POST /oauth2/authorize`: its CSRF token must match the browser's
//! CSRF cookie; the password goes through the same checks as `/api/v1/auth/login` (per-IP
//! limit, account gate and lockout, argon2, failure record). For an account without a second
//! factor, success opens a browser session and carries on at step 4. An account with one gets
//! no session yet: `mfa::require` stores a pending step of kind `browser` and the second-factor
//! page carries its `mfa_token` in its forms. `POST /oauth2/authorize/mfa` ([`second_factor`]:
//! `mfa::attempt`, then `totp::second_step`) and `POST /oauth2/authorize/passkey` ([`passkey`]:
//! `webauthn::sign_in_finish`, also passwordless without an `mfa_token`) open the session with
//! the `amr` the factor reached and carry on at step 4; a wrong factor is the page again while
//! the step has attempts, a step that is over the sign-in page. The consent form posts to
//! `POST /oauth2/consent`.

use std::time::Duration;

use auth_actors::db::grants;
use auth_actors::db::sessions::{self, BrowserSession, SessionKind, StartOutcome};
use time::OffsetDateTime;
use uuid::Uuid;

use super::client_auth;
use super::protocol::{ClientEntry, OAuthForm, valid_pkce};
use crate::app::App;
use crate::authz::Cached;
use crate::domain::Peer;
use crate::flows::error::FlowError;
use crate::flows::login::{self, LoginInput};
use crate::flows::mfa::{self, StepKind, acr, amr};
use crate::flows::totp::{self, CodeKind};
use crate::flows::webauthn;
use crate::secret::Secret;
use auth_actors::db::mfa::{Factors, GetFactors};

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
    "acr_values",
];

/// The longest `acr_values` an authorization request may carry.
pub const MAX_ACR_VALUES_LEN: usize = 1024;

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
    /// The authentication context classes the client asks for (OpenID Connect `acr_values`,
    /// space-separated, in order of preference).
    pub acr_values: Vec<String>,
    /// The request's own parameters, to carry through a page's form.
    pub fields: Vec<(String, String)>,
}

impl Request {
    /// Whether this sign-in must reach the multi-factor `acr`: the client asked for it in
    /// `acr_values`, or it is registered with `require_mfa`.
    pub fn wants_mfa(&self) -> bool {
        self.client.metadata().require_mfa || self.acr_values.iter().any(|a| a == acr::MFA)
    }
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
    /// The second-factor page: the password was right, the account has `factors`, and the
    /// pending step `mfa_token` waits for one of them.
    SecondFactor { request: Request, mfa_token: String, factors: Factors, error: Option<SecondFactorError> },
    /// The request needs a second factor and the signed-in user has none: set one up first.
    Enrol { request: Request, username: String },
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
    /// The password was right, but the address must be verified first.
    EmailUnverified,
    /// Too many attempts: try again after this long.
    Throttled(Duration),
    /// The second step of this sign-in is over (expired, used, or out of attempts).
    Expired,
    /// The passkey was not accepted.
    Passkey,
}

/// Why a second-factor attempt failed, as the second-factor page tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorError {
    /// The code was wrong.
    WrongCode,
    /// The passkey was not accepted.
    Passkey,
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

impl From<auth_actors::db::DbError> for PageError {
    fn from(e: auth_actors::db::DbError) -> Self {
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

pub(super) fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
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
    if !super::protocol::plausible_client_id(client_id) {
        return Err(PageError::UnknownClient);
    }
    let recent = match registration {
        Registration::Recent => app.clients.get_recent(client_id),
        Registration::Current => None,
    };
    let client = match recent {
        Some(client) => client,
        None => {
            let epoch = app.services.redis.check_tokens(&[], true).await.map_err(FlowError::from)?.authz_epoch;
            client_auth::client_entry(app, client_id, epoch.as_deref()).await?.ok_or(PageError::UnknownClient)?
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
    let acr_values = param(form, "acr_values").unwrap_or_default();
    if acr_values.len() > MAX_ACR_VALUES_LEN {
        return back("invalid_request", &format!("acr_values must be at most {MAX_ACR_VALUES_LEN} characters"));
    }
    let acr_values = parse_acr_values(acr_values);
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
        acr_values,
        fields,
    }))
}

/// `acr_values` (OpenID Connect Core §3.1.2.1): space-separated, in order of preference. Values
/// this service does not know are kept (they are voluntary: a sign-in reaches what it reaches,
/// and the ID token's `acr` says which); only the multi-factor one changes the flow.
pub fn parse_acr_values(raw: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for value in raw.split(' ').filter(|v| !v.is_empty()) {
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
        }
    }
    values
}

/// The browser session a cookie names, if it is live.
pub async fn browser_session(app: &App, cookie: Option<&str>) -> Result<Option<BrowserSession>, FlowError> {
    let Some(secret) = cookie.and_then(Secret::parse) else { return Ok(None) };
    Ok(app.services.db.run(sessions::FindBrowserSession { token_hash: secret.digest() }).await?)
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
    // Step-up: a session signed in without a second factor does not reach the multi-factor
    // `acr`. A user who has a factor signs in again with it; one who has none sets one up first.
    if request.wants_mfa() && !session.amr.iter().any(|m| m == amr::MFA) {
        let factors = app.services.db.run(GetFactors { user_id: session.user.id }).await?;
        if factors.any() {
            if request.prompt == Some(Prompt::None) {
                return back("login_required", "the request needs a sign-in with a second factor");
            }
            return Ok(Step::SignIn { request, login: session.user.username, error: None });
        }
        if request.prompt == Some(Prompt::None) {
            return back("interaction_required", "the user must set up a second factor first");
        }
        return Ok(Step::Enrol { request, username: session.user.username });
    }
    let scopes: Vec<String> = request.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
    if !request.client.metadata().first_party {
        let consent = grants::Consent { user_id: session.user.id, client_id: request.client.id().to_string() };
        let given = app.services.db.run(consent).await?.unwrap_or_default();
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
    let secret = Secret::generate()?;
    let code = secret.encode();
    let issue = grants::IssueCode {
        code_hash: secret.digest(),
        client_id: request.client.id().to_string(),
        user_id: session.user.id,
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        ttl: CODE_TTL,
    };
    app.services.db.run(issue).await?;
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
    peer: &Peer,
) -> Result<(Step, Option<SignedIn>), FlowError> {
    let input = LoginInput { username: username.clone(), password };
    let checked = match login::check_password(app, input, peer).await {
        Ok(c) => c,
        Err(FlowError::BadCredentials) => {
            return Ok((Step::SignIn { request, login: username, error: Some(SignInError::BadCredentials) }, None));
        }
        Err(FlowError::Throttled { retry_after }) => {
            let error = Some(SignInError::Throttled(retry_after));
            return Ok((Step::SignIn { request, login: username, error }, None));
        }
        Err(FlowError::EmailUnverified) => {
            return Ok((Step::SignIn { request, login: username, error: Some(SignInError::EmailUnverified) }, None));
        }
        Err(e) => return Err(e),
    };
    if checked.factors.any() {
        // No session yet: the second-factor page, whose form carries the pending step.
        let challenge = mfa::require(app, &checked, StepKind::Browser).await?;
        let step =
            Step::SecondFactor { request, mfa_token: challenge.mfa_token, factors: checked.factors, error: None };
        return Ok((step, None));
    }
    start_session(app, request, checked, peer).await
}

/// `POST /oauth2/authorize/mfa`: the second-factor form (a TOTP or a recovery code). A wrong
/// code is the page again (while the step has attempts left); a step that is over is the
/// sign-in page.
pub async fn second_factor(
    app: &App,
    request: Request,
    mfa_token: String,
    kind: CodeKind,
    code: &str,
    peer: &Peer,
) -> Result<(Step, Option<SignedIn>), FlowError> {
    let step = match mfa::attempt(app, &mfa_token, StepKind::Browser, peer).await {
        Ok(step) => step,
        Err(e) => return step_over(request, e),
    };
    let user_id = step.user_id();
    match totp::second_step(app, step, kind, code, peer).await {
        Ok(checked) => start_session(app, request, checked, peer).await,
        Err(FlowError::InvalidMfaCode) => {
            let factors = app.services.db.run(GetFactors { user_id }).await?;
            let error = Some(SecondFactorError::WrongCode);
            Ok((Step::SecondFactor { request, mfa_token, factors, error }, None))
        }
        Err(e) => step_over(request, e),
    }
}

/// `POST /oauth2/authorize/passkey`: a passkey's assertion, as the second factor of the step
/// `mfa_token` names, or without one as a passwordless sign-in.
pub async fn passkey(
    app: &App,
    request: Request,
    mfa_token: Option<String>,
    ceremony: Uuid,
    credential: &serde_json::Value,
    peer: &Peer,
) -> Result<(Step, Option<SignedIn>), FlowError> {
    let finished =
        webauthn::sign_in_finish(app, ceremony, mfa_token.as_deref(), StepKind::Browser, credential, peer).await;
    match (finished, mfa_token) {
        (Ok(checked), _) => start_session(app, request, checked, peer).await,
        (Err(FlowError::InvalidMfaCode | FlowError::BadCredentials | FlowError::Passkey(_)), Some(mfa_token)) => {
            let Some(pending) = mfa::peek(app, &mfa_token).await? else {
                return step_over(request, FlowError::InvalidMfaToken);
            };
            let factors = app.services.db.run(GetFactors { user_id: pending.user_id }).await?;
            let error = Some(SecondFactorError::Passkey);
            Ok((Step::SecondFactor { request, mfa_token, factors, error }, None))
        }
        (Err(FlowError::InvalidMfaCode | FlowError::BadCredentials | FlowError::Passkey(_)), None) => {
            Ok((Step::SignIn { request, login: String::new(), error: Some(SignInError::Passkey) }, None))
        }
        (Err(e), _) => step_over(request, e),
    }
}

/// A second step that cannot go on: over (the sign-in page, to start again), throttled (the
/// sign-in page with the wait), or a failure of the service.
fn step_over(request: Request, e: FlowError) -> Result<(Step, Option<SignedIn>), FlowError> {
    let error = match e {
        FlowError::InvalidMfaToken => SignInError::Expired,
        FlowError::Throttled { retry_after } => SignInError::Throttled(retry_after),
        e => return Err(e),
    };
    Ok((Step::SignIn { request, login: String::new(), error: Some(error) }, None))
}

/// Opens the browser session of a user fully signed in (`checked`, with its `amr`) and carries
/// on at step 4.
async fn start_session(
    app: &App,
    request: Request,
    checked: login::Checked,
    peer: &Peer,
) -> Result<(Step, Option<SignedIn>), FlowError> {
    let username = checked.user.username.clone();
    let Some(signed_in) = open_session(app, checked, peer).await? else {
        let error = Some(SignInError::BadCredentials);
        return Ok((Step::SignIn { request, login: username, error }, None));
    };
    let step = decide(app, request, Some(signed_in.session.clone()), true).await?;
    Ok((step, Some(signed_in)))
}

/// Opens the browser session of a user fully signed in (`checked`, with its `amr`); `None` when
/// the password changed since it was checked.
pub async fn open_session(app: &App, checked: login::Checked, peer: &Peer) -> Result<Option<SignedIn>, FlowError> {
    let ttl = app.config.oauth.browser_session_ttl;
    let (cookie, session) = login::new_session(&checked, SessionKind::Browser, ttl, peer)?;
    let family = session.family_id;
    if app.services.db.run(sessions::Start(session)).await? == StartOutcome::CredentialsChanged {
        return Ok(None);
    }
    app.metrics
        .logins
        .get_or_create(&crate::metrics::OutcomeLabels { outcome: crate::metrics::Outcome::success })
        .inc();
    let session = BrowserSession {
        family_id: family,
        user: checked.user,
        auth_time: OffsetDateTime::now_utc(),
        amr: checked.amr,
    };
    Ok(Some(SignedIn { cookie, session }))
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
    let grant = grants::GrantConsent {
        user_id: session.user.id,
        client_id: request.client.id().to_string(),
        scope: request.scope.clone(),
    };
    app.services.db.run(grant).await?;
    decide(app, request, Some(session), true).await
}

/// The consents a user has given.
pub async fn consents(app: &App, user_id: Uuid) -> Result<Vec<grants::ConsentRow>, FlowError> {
    Ok(app.services.db.run(grants::ListConsents { user_id }).await?)
}

/// Takes back a consent; the client's sessions of that user end with it.
pub async fn revoke_consent(app: &App, user_id: Uuid, client_id: &str) -> Result<(), FlowError> {
    let revoke = grants::RevokeConsent { user_id, client_id: client_id.to_string() };
    let sessions =
        app.services.db.run(revoke).await?.ok_or(FlowError::NotFound(crate::flows::error::Entity::Client))?;
    crate::flows::logout::fence_sessions(app, user_id, sessions).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_append_to_an_existing_query() {
        assert_eq!(with_query("https://a.example/cb?x=1", &[("code", "c")]), "https://a.example/cb?x=1&code=c");
        assert_eq!(with_query("https://a.example/cb", &[("state", "a b")]), "https://a.example/cb?state=a+b");
    }
}
