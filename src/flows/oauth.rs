//! The OAuth 2.1 token endpoint (`POST /oauth2/token`) and client authentication, which the
//! token, introspection and revocation endpoints share.
//!
//! Client authentication (RFC 6749 §2.3, RFC 7523 §2.2):
//!
//! 1. Read what the request presents: HTTP Basic (`client_secret_basic`), `client_id` and
//!    `client_secret` in the form (`client_secret_post`), a `client_assertion` of type
//!    `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` (`private_key_jwt`), or only a
//!    `client_id` (a public client, `none`, which proves nothing and so may only redeem codes
//!    with PKCE and rotate its own refresh tokens). More than one method is `invalid_request`;
//!    none is `invalid_client`.
//! 2. The client gate in Redis, in one round trip with the authorization epoch: a client locked
//!    for this address is refused (429) before anything is checked, the per-client limit is
//!    counted, and one check is reserved so that parallel guesses from one address cannot
//!    outnumber `CLIENT_AUTH_THRESHOLD`. The lockout is per (address, client), never of the
//!    client as a whole: client ids are public and secrets carry 256 random bits, so a global
//!    lock would protect nothing and let anyone shut a client out.
//! 3. The client's registration and live secrets, from the per-instance cache filed under the
//!    epoch (every registration change replaces it), or from PostgreSQL.
//! 4. The method must be the registered one. A secret is compared by its SHA-256 with every
//!    secret that still works (the current one, and rotated-out ones inside their overlap), in
//!    constant time. An assertion must be signed by one of the client's keys (its `jwks`, or its
//!    `jwks_uri`, fetched and cached) with RS256 or ES256, name the client as `iss` and `sub`,
//!    the token endpoint, the endpoint called or the issuer as `aud`, expire within
//!    `CLIENT_ASSERTION_MAX_AGE`, and carry a `jti` never seen before within its lifetime.
//! 5. The gate learns the outcome: a success clears this address's failures, a failure counts
//!    (and at the threshold locks the client for this address) and is recorded as a
//!    `client_auth_failed` event. Every failure is the same `401 invalid_client`.
//!
//! A `resource` parameter (RFC 8707) must name the audience the client is registered for
//! (`invalid_target` otherwise). A token's `aud` is that audience, or else the client's own id;
//! only a `first_party` client can be registered for this service's own API (`JWT_AUDIENCE`).
//!
//! Grants: `authorization_code` (see [`super::authorize`]), `client_credentials` (a token whose
//! `sub` and `client_id` are the client) and `refresh_token` (a session bound to the client,
//! rotated exactly as `/api/v1/auth/refresh` rotates, with the same grace window and reuse
//! detection). The client must be registered for
//! the grant (`unauthorized_client`); the scopes asked for must be among its own
//! (`invalid_scope`); no scope asked for means all of them.

use std::sync::Arc;
use std::time::Duration;

use auth_actors::db::clients::{self, AuthMethod, ClientCredentials};
use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::db::sessions::{NewToken, Rotate, RotateOutcome, RotationRules};
use auth_actors::rate_limiter::{BeginClient, ClientGate, ClientLimits, EndClient, UseAssertion};
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Client;
use super::clients::{ASSERTION_ALGS, plausible_client_id, secret_digest, valid_scope_token};
use super::error::{Dependency, FlowError};
use super::tokens::{self, AccessClaims, TokenKind};
use crate::app::App;
use crate::metrics::{GrantLabels, GrantOutcome};

/// `client_assertion_type` of RFC 7523 §2.2.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An error of the OAuth protocol (RFC 6749 §5.2), or a failure of the service behind it.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    /// `basic`: the client tried HTTP Basic, so the answer names that scheme (RFC 6749 §5.2).
    #[error("{description}")]
    InvalidClient { description: String, basic: bool },
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    /// A `resource` (RFC 8707 §2) the client is not registered to get tokens for.
    #[error("{0}")]
    InvalidTarget(String),
    /// The client is locked, over its limit, or has too many checks under way.
    #[error("{description}")]
    Throttled { description: &'static str, retry_after: Duration },
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl OAuthError {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } | OAuthError::Throttled { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::Flow(_) => "server_error",
        }
    }

    fn outcome(&self) -> GrantOutcome {
        match self {
            OAuthError::InvalidRequest(_) => GrantOutcome::invalid_request,
            OAuthError::InvalidClient { .. } => GrantOutcome::invalid_client,
            OAuthError::InvalidGrant(_) => GrantOutcome::invalid_grant,
            OAuthError::UnauthorizedClient(_) => GrantOutcome::unauthorized_client,
            OAuthError::UnsupportedGrantType(_) => GrantOutcome::unsupported_grant_type,
            OAuthError::InvalidScope(_) => GrantOutcome::invalid_scope,
            OAuthError::InvalidTarget(_) => GrantOutcome::invalid_target,
            OAuthError::Throttled { .. } => GrantOutcome::throttled,
            OAuthError::Flow(_) => GrantOutcome::error,
        }
    }
}

impl From<auth_actors::user_store::StoreError> for OAuthError {
    fn from(e: auth_actors::user_store::StoreError) -> Self {
        OAuthError::Flow(e.into())
    }
}

impl From<auth_actors::rate_limiter::LimiterError> for OAuthError {
    fn from(e: auth_actors::rate_limiter::LimiterError) -> Self {
        OAuthError::Flow(e.into())
    }
}

/// The form of the token, introspection and revocation endpoints. A parameter without a value
/// counts as absent, and none may be given twice (RFC 6749 §3.2).
#[derive(Debug, Default)]
pub struct OAuthForm(Vec<(String, String)>);

impl OAuthForm {
    pub fn new(pairs: Vec<(String, String)>) -> Result<OAuthForm, OAuthError> {
        let mut names: Vec<&str> = pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(OAuthError::InvalidRequest(format!("parameter {} is given more than once", twice[0])));
        }
        Ok(OAuthForm(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }
}

/// A registered client as the token endpoint uses it.
#[derive(Debug)]
pub struct ClientEntry {
    pub credentials: ClientCredentials,
    /// Its inline JWK Set, parsed once.
    pub jwks: Option<JwkSet>,
}

impl ClientEntry {
    pub fn id(&self) -> &str {
        &self.credentials.client.client_id
    }

    pub fn metadata(&self) -> &clients::ClientMetadata {
        &self.credentials.client.metadata
    }

    /// Whether the client may be granted every scope of `requested` (space-separated).
    fn allows_scopes(&self, requested: &str) -> bool {
        let allowed: Vec<&str> = self.metadata().scope.split(' ').collect();
        requested.split(' ').filter(|s| !s.is_empty()).all(|s| allowed.contains(&s))
    }
}

/// A client that has proved who it is.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub entry: crate::authz::Cached<ClientEntry>,
    pub method: AuthMethod,
}

impl AuthenticatedClient {
    pub fn id(&self) -> &str {
        self.entry.id()
    }
}

/// What a request presents as client credentials.
#[derive(Debug)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: String,
    },
    Post {
        client_id: String,
        secret: String,
    },
    Assertion {
        client_id: String,
        assertion: String,
    },
    /// Only a `client_id`: a public client.
    Public {
        client_id: String,
    },
    /// Nothing that names a client.
    Nothing,
}

impl Presented {
    fn method(&self) -> &'static str {
        match self {
            Presented::Basic { .. } => "client_secret_basic",
            Presented::Post { .. } => "client_secret_post",
            Presented::Assertion { .. } => "private_key_jwt",
            Presented::Public { .. } | Presented::Nothing => "none",
        }
    }

    /// Whether the request tried to authenticate as a client at all.
    pub fn is_some(&self) -> bool {
        !matches!(self, Presented::Nothing)
    }
}

fn invalid_client(description: impl Into<String>, basic: bool) -> OAuthError {
    OAuthError::InvalidClient { description: description.into(), basic }
}

/// Percent-decoding of the `application/x-www-form-urlencoded` encoding that RFC 6749 §2.3.1
/// puts on the client id and secret inside HTTP Basic.
fn form_decode(raw: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={raw}")).ok()?.pop().map(|(_, v)| v)
}

/// The client credentials of a request (its `Authorization` header and its form).
pub fn presented(authorization: Option<&str>, form: &OAuthForm) -> Result<Presented, OAuthError> {
    let basic = match authorization.and_then(|h| h.split_once(' ')) {
        Some((scheme, value)) if scheme.eq_ignore_ascii_case("basic") => {
            let bad = || invalid_client("malformed HTTP Basic credentials", true);
            let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
            Some((form_decode(id).ok_or_else(bad)?, form_decode(secret).ok_or_else(bad)?))
        }
        _ => None,
    };
    let form_id = form.get("client_id");
    let secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let several = [basic.is_some(), secret.is_some(), assertion.is_some()].iter().filter(|p| **p).count() > 1;
    if several {
        return Err(OAuthError::InvalidRequest("use one client authentication method, not several".into()));
    }
    if let (Some((id, _)), Some(form_id)) = (&basic, form_id)
        && id != form_id
    {
        return Err(OAuthError::InvalidRequest("client_id differs from the HTTP Basic client".into()));
    }
    Ok(match (basic, secret, assertion) {
        (Some((client_id, secret)), _, _) => Presented::Basic { client_id, secret },
        (None, Some(secret), None) => {
            let client_id = form_id.ok_or_else(|| OAuthError::InvalidRequest("client_id is required".into()))?;
            Presented::Post { client_id: client_id.to_string(), secret: secret.to_string() }
        }
        (None, None, Some(assertion)) => {
            if form.get("client_assertion_type") != Some(JWT_BEARER) {
                return Err(OAuthError::InvalidRequest(format!("client_assertion_type must be {JWT_BEARER}")));
            }
            let client_id = match form_id {
                Some(id) => id.to_string(),
                // The assertion names its client (unverified until its signature is checked).
                None => {
                    unverified_subject(assertion).ok_or_else(|| invalid_client("malformed client assertion", false))?
                }
            };
            Presented::Assertion { client_id, assertion: assertion.to_string() }
        }
        (None, None, None) => match form_id {
            Some(client_id) => Presented::Public { client_id: client_id.to_string() },
            None => Presented::Nothing,
        },
        _ => Presented::Nothing,
    })
}

fn unverified_subject(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_string)
}

/// The URLs a client assertion may name as its audience: the issuer and this service's
/// endpoints that take client authentication (RFC 7523 §3).
fn assertion_audiences(app: &App) -> Vec<String> {
    let base = &app.config.tokens.public_url;
    let mut audiences: Vec<String> =
        ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/api/v1/auth/introspect", "/api/v1/auth/revoke"]
            .iter()
            .map(|p| format!("{base}{p}"))
            .collect();
    audiences.push(app.config.tokens.issuer.clone());
    audiences
}

/// What a client authenticates for: the token endpoint also counts the request against the
/// client's limit (`RATE_LIMIT_CLIENT`); introspection and revocation do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientUse {
    Token,
    ResourceServer,
}

/// Authenticates the client a request presents; see the module documentation.
pub async fn authenticate_client(
    app: &App,
    presented: Presented,
    request: &Client,
    client_use: ClientUse,
) -> Result<AuthenticatedClient, OAuthError> {
    let basic = matches!(presented, Presented::Basic { .. });
    let client_id = match &presented {
        Presented::Basic { client_id, .. }
        | Presented::Post { client_id, .. }
        | Presented::Assertion { client_id, .. }
        | Presented::Public { client_id } => client_id.clone(),
        Presented::Nothing => return Err(invalid_client("client authentication is required", false)),
    };
    if !plausible_client_id(&client_id) {
        return Err(invalid_client("unknown client or wrong credentials", basic));
    }
    let l = &app.config.limits;
    let limits = l.enabled.then_some(ClientLimits {
        // 0: no request limit, only the lockout.
        limit: if client_use == ClientUse::Token { l.client.limit } else { 0 },
        window: l.client.window,
        threshold: l.client_auth_threshold,
    });
    let limiter = &app.services.limiter;
    // Failures are counted per (address, client): client ids are public, so a lock of the
    // client itself would hand any stranger a way to shut it out (SPEC §7).
    let address = request.ip_string().unwrap_or_default();
    let gate = limiter.run(BeginClient { client: client_id.clone(), address: address.clone(), limits }).await?;
    match gate.gate {
        ClientGate::Allowed => {}
        ClientGate::Locked { retry_after } => {
            return Err(OAuthError::Throttled { description: "too many failed authentications", retry_after });
        }
        ClientGate::RateLimited { retry_after } => {
            super::limits::denied(app, auth_actors::keyspace::LimitClass::Client);
            return Err(OAuthError::Throttled { description: "too many token requests", retry_after });
        }
        ClientGate::Busy { retry_after } => {
            return Err(OAuthError::Throttled { description: "too many authentications under way", retry_after });
        }
    }
    let method = presented.method();
    let verdict = check_credentials(app, &client_id, presented, gate.authz_epoch.as_deref()).await;
    if let Some(limits) = limits {
        let end = EndClient {
            client: client_id.clone(),
            address,
            success: verdict.is_ok(),
            threshold: limits.threshold,
            base: l.lockout_base,
            max: l.lockout_max,
        };
        if let Some(lock) = limiter.run(end).await? {
            let event = SecurityEvent::ClientLockout { client: client_id.clone(), retry_after_secs: lock.as_secs() };
            app.services.users.run(events::Record { event, ip: request.ip_string() }).await?;
        }
    }
    match verdict {
        Ok(client) => Ok(client),
        Err(Refused::Because(reason)) => {
            app.metrics.client_auth_failures.get_or_create(&crate::metrics::MethodLabels { method }).inc();
            let event = SecurityEvent::ClientAuthFailed { client: client_id, method, reason };
            app.services.users.run(events::Record { event, ip: request.ip_string() }).await?;
            Err(invalid_client("unknown client or wrong credentials", basic))
        }
        Err(Refused::Outage(e)) => Err(e),
    }
}

/// Why a check of credentials failed.
enum Refused {
    /// The credentials are wrong (the reason goes to the security event, not to the client).
    Because(&'static str),
    Outage(OAuthError),
}

impl<E: Into<OAuthError>> From<E> for Refused {
    fn from(e: E) -> Self {
        Refused::Outage(e.into())
    }
}

/// The client's registration, from the cache under `epoch` or from PostgreSQL.
pub async fn client_entry(
    app: &App,
    client_id: &str,
    epoch: Option<&str>,
) -> Result<Option<crate::authz::Cached<ClientEntry>>, FlowError> {
    if let Some(epoch) = epoch
        && let Some(entry) = app.clients.get(client_id, epoch)
    {
        return Ok(Some(entry));
    }
    let Some(credentials) = app.services.users.run(clients::Credentials { client_id: client_id.to_string() }).await?
    else {
        return Ok(None);
    };
    let jwks = credentials.client.metadata.jwks.clone().and_then(|j| serde_json::from_value(j).ok());
    let entry = ClientEntry { credentials, jwks };
    Ok(Some(app.clients.put(client_id.to_string(), epoch.map(str::to_string), entry)))
}

async fn check_credentials(
    app: &App,
    client_id: &str,
    presented: Presented,
    epoch: Option<&str>,
) -> Result<AuthenticatedClient, Refused> {
    let Some(entry) = client_entry(app, client_id, epoch).await? else {
        return Err(Refused::Because("unknown_client"));
    };
    let registered = entry.metadata().auth_method;
    let method = match presented {
        Presented::Basic { secret, .. } if registered == AuthMethod::ClientSecretBasic => {
            check_secret(&entry, &secret)?;
            registered
        }
        Presented::Post { secret, .. } if registered == AuthMethod::ClientSecretPost => {
            check_secret(&entry, &secret)?;
            registered
        }
        Presented::Assertion { assertion, .. } if registered == AuthMethod::PrivateKeyJwt => {
            check_assertion(app, &entry, &assertion).await?;
            registered
        }
        Presented::Public { .. } if registered == AuthMethod::None => registered,
        _ => return Err(Refused::Because("method_not_registered")),
    };
    Ok(AuthenticatedClient { entry, method })
}

fn check_secret(entry: &ClientEntry, secret: &str) -> Result<(), Refused> {
    let presented = secret_digest(secret);
    let now = OffsetDateTime::now_utc();
    let mut matched = false;
    for s in &entry.credentials.secrets {
        let live = s.expires_at.is_none_or(|until| until > now);
        // Every stored digest is compared, so the time does not tell which one matched.
        let equal = aws_lc_rs::constant_time::verify_slices_are_equal(&s.digest, &presented).is_ok();
        matched |= equal && live;
    }
    if matched { Ok(()) } else { Err(Refused::Because("wrong_secret")) }
}

#[derive(Debug, serde::Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: Option<String>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

async fn check_assertion(app: &App, entry: &ClientEntry, assertion: &str) -> Result<(), Refused> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| Refused::Because("malformed_assertion"))?;
    let alg = format!("{:?}", header.alg);
    if !ASSERTION_ALGS.contains(&alg.as_str()) {
        return Err(Refused::Because("assertion_algorithm"));
    }
    let keys = match (&entry.jwks, &entry.metadata().jwks_uri) {
        (Some(jwks), _) => Arc::new(jwks.clone()),
        (None, Some(uri)) => app
            .remote_keys
            .get(uri, header.kid.as_deref())
            .await
            .map_err(|_| Refused::Because("jwks_uri_unavailable"))?,
        (None, None) => return Err(Refused::Because("no_keys")),
    };
    let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
        Some(kid) => keys.keys.iter().filter(|k| k.common.key_id.as_deref() == Some(kid.as_str())).collect(),
        None => keys.keys.iter().collect(),
    };
    let t = &app.config.tokens;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[entry.id()]);
    validation.set_audience(&assertion_audiences(app));
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = t.clock_skew.as_secs();
    let claims = candidates
        .iter()
        .filter_map(|jwk| jsonwebtoken::DecodingKey::from_jwk(jwk).ok())
        .find_map(|key| jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation).ok())
        .ok_or(Refused::Because("assertion_signature_or_claims"))?
        .claims;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let max_age = app.config.oauth.assertion_max_age.as_secs() as i64 + t.clock_skew.as_secs() as i64;
    if claims.sub != entry.id() || claims.iss != entry.id() {
        return Err(Refused::Because("assertion_subject"));
    }
    if claims.exp - now > max_age {
        return Err(Refused::Because("assertion_lifetime"));
    }
    // RFC 7523 §3: not to be used before `nbf`; and an `iat` in the future is no issue time. A
    // post-dated assertion would also outlive the replay record, which ends at `exp`.
    let skew = t.clock_skew.as_secs() as i64;
    if claims.nbf.into_iter().chain(claims.iat).any(|at| at > now.saturating_add(skew)) {
        return Err(Refused::Because("assertion_not_yet_valid"));
    }
    let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or(Refused::Because("assertion_jti"))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jti.as_bytes());
    let jti_digest = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let ttl = Duration::from_secs((claims.exp - now).max(0) as u64) + t.clock_skew + Duration::from_secs(1);
    let fresh = app.services.limiter.run(UseAssertion { client: entry.id().to_string(), jti_digest, ttl }).await?;
    if !fresh {
        return Err(Refused::Because("assertion_replayed"));
    }
    Ok(())
}

/// What the token endpoint answers on success (RFC 6749 §5.1).
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OpenID Connect: when the code was issued for scope `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// `POST /oauth2/token` for an authenticated client.
pub async fn token(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
    request: &Client,
) -> Result<TokenResponse, OAuthError> {
    let grant = form.get("grant_type");
    let result = match grant {
        None => Err(OAuthError::InvalidRequest("grant_type is required".into())),
        Some(g) if !super::clients::GRANT_TYPES.contains(&g) => {
            Err(OAuthError::UnsupportedGrantType(format!("grant type {g:?} is not supported")))
        }
        Some(g) if !client.entry.metadata().grant_types.iter().any(|r| r == g) => {
            Err(OAuthError::UnauthorizedClient(format!("the client is not registered for the {g} grant")))
        }
        _ if form.get("resource").is_some_and(|r| Some(r) != client.entry.metadata().audience.as_deref()) => {
            Err(OAuthError::InvalidTarget("the client is not registered for this resource".into()))
        }
        Some("authorization_code") => super::authorize::exchange(app, client, form, request).await,
        Some("client_credentials") => client_credentials(app, client, form).await,
        Some(_) => refresh_token(app, client, form, request).await,
    };
    count_token_request(app, form, result.as_ref().map(|_| ()));
    result
}

/// Counts a token request by grant type and outcome, including one refused before its grant
/// was looked at (client authentication, the client gate).
pub fn count_token_request(app: &App, form: &OAuthForm, result: Result<(), &OAuthError>) {
    let grant_type = match form.get("grant_type") {
        Some("authorization_code") => "authorization_code",
        Some("client_credentials") => "client_credentials",
        Some("refresh_token") => "refresh_token",
        _ => "other",
    };
    let outcome = match result {
        Ok(()) => GrantOutcome::issued,
        Err(e) => e.outcome(),
    };
    app.metrics.token_requests.get_or_create(&GrantLabels { grant_type, outcome }).inc();
}

/// The scope to grant: what was asked for, if the client may have all of it; else everything the
/// client may have.
fn granted_scope(client: &AuthenticatedClient, requested: Option<&str>) -> Result<String, OAuthError> {
    match requested {
        None => Ok(client.entry.metadata().scope.clone()),
        Some(r) => {
            let mut scopes: Vec<&str> = r.split(' ').filter(|s| !s.is_empty()).collect();
            if scopes.iter().any(|s| !valid_scope_token(s)) {
                return Err(OAuthError::InvalidScope("malformed scope".into()));
            }
            if !client.entry.allows_scopes(r) {
                return Err(OAuthError::InvalidScope("a requested scope is not allowed for this client".into()));
            }
            scopes.sort_unstable();
            scopes.dedup();
            Ok(scopes.join(" "))
        }
    }
}

pub(super) fn ttl_of(app: &App, client: &AuthenticatedClient) -> u64 {
    client.entry.metadata().access_token_ttl.map_or(app.config.tokens.access_ttl.as_secs(), |t| t.max(1) as u64)
}

/// The `aud` of an access token issued to `client`: the audience it was registered for, or
/// else the client itself. Only a first-party client can be registered for this service's own
/// API (`JWT_AUDIENCE`, see [`super::clients::check_audience`]), so no other client's token is
/// ever accepted there (SPEC §7, "Who may use a token where").
pub(super) fn audience_of(client: &AuthenticatedClient) -> String {
    client.entry.metadata().audience.clone().unwrap_or_else(|| client.id().to_string())
}

async fn client_credentials(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
) -> Result<TokenResponse, OAuthError> {
    let scope = granted_scope(client, form.get("scope"))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let ttl = ttl_of(app, client);
    let claims = AccessClaims {
        iss: app.config.tokens.issuer.clone(),
        sub: client.id().to_string(),
        aud: audience_of(client),
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        jti: Uuid::now_v7(),
        kind: TokenKind::Access,
        username: None,
        email: None,
        roles: None,
        sid: None,
        client_id: Some(client.id().to_string()),
        scope: Some(scope.clone()),
    };
    let access_token = app.services.keys.sign("at+jwt", claims).await.map_err(FlowError::from)?;
    app.metrics.tokens_issued.inc();
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: Some(scope).filter(|s| !s.is_empty()),
        refresh_token: None,
        id_token: None,
    })
}

/// The refresh-token grant: the session must be bound to this client; the rotation is the one
/// `/api/v1/auth/refresh` uses. A narrower `scope` than the session's may be asked for (RFC 6749
/// §6); a wider one is `invalid_scope`.
async fn refresh_token(
    app: &App,
    client: &AuthenticatedClient,
    form: &OAuthForm,
    request: &Client,
) -> Result<TokenResponse, OAuthError> {
    let presented =
        form.get("refresh_token").ok_or_else(|| OAuthError::InvalidRequest("refresh_token is required".into()))?;
    let invalid = || OAuthError::InvalidGrant("invalid, expired or revoked refresh token".into());
    let parent = tokens::decode_refresh(presented).ok_or_else(invalid)?;
    let candidate = tokens::new_refresh_secret()?;
    let candidate_secret = tokens::decode_refresh(&candidate).ok_or(FlowError::Unavailable(Dependency::Randomness))?;
    let t = &app.config.tokens;
    let successor = NewToken {
        id: Uuid::now_v7(),
        hash: tokens::refresh_hash(&candidate_secret),
        expires_at: OffsetDateTime::now_utc() + t.refresh_ttl,
    };
    let rules =
        RotationRules { grace: t.reuse_grace, grace_retries: t.grace_retries, max_lifetime: t.session_max_lifetime };
    // A scope wider than the session's is refused before anything is written, so the client
    // keeps a token it can refresh.
    let asked: Option<Vec<String>> =
        form.get("scope").map(|asked| asked.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect());
    let rotate = Rotate {
        presented: tokens::refresh_hash(&parent),
        successor,
        sealed: tokens::seal(&parent, &candidate_secret),
        rules,
        ip: request.ip_string(),
        client_id: Some(client.id().to_string()),
        scope: asked,
    };
    let (user, family, scope, refresh_token) = match app.services.users.run(rotate).await? {
        RotateOutcome::Rotated { user, family_id, scope } => (user, family_id, scope, candidate),
        RotateOutcome::Retried { user, family_id, scope, sealed } => {
            (user, family_id, scope, tokens::unseal(&parent, &sealed).ok_or_else(invalid)?)
        }
        RotateOutcome::ReuseDetected { user_id, family_id } => {
            super::logout::fence_sessions(app, user_id, vec![family_id]).await?;
            return Err(OAuthError::InvalidGrant("refresh token reuse detected; the session has been revoked".into()));
        }
        RotateOutcome::ScopeExceeded => {
            return Err(OAuthError::InvalidScope("a refresh cannot widen the session's scope".into()));
        }
        RotateOutcome::Invalid => return Err(invalid()),
    };
    if !user.is_active {
        return Err(invalid());
    }
    // The rotation checked that what was asked for is within the session's scope.
    let scope = form.get("scope").map(str::to_string).unwrap_or_else(|| scope.unwrap_or_default());
    let to = tokens::IssuedTo {
        client_id: client.id(),
        audience: audience_of(client),
        scope: scope.clone(),
        ttl: ttl_of(app, client),
    };
    let (access_token, ttl) = tokens::issue_access(app, &user, family, Some(to)).await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: Some(scope).filter(|s| !s.is_empty()),
        refresh_token: Some(refresh_token),
        id_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> OAuthForm {
        OAuthForm::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).expect("form")
    }

    #[test]
    fn a_parameter_given_twice_is_an_invalid_request_and_an_empty_one_is_absent() {
        let twice = vec![("scope".to_string(), "a".to_string()), ("scope".to_string(), "b".to_string())];
        assert!(matches!(OAuthForm::new(twice), Err(OAuthError::InvalidRequest(_))));
        assert_eq!(form(&[("scope", "")]).get("scope"), None);
    }

    #[test]
    fn credentials_are_read_from_exactly_one_place() {
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("svc%3A1:s%2Bcret"));
        match presented(Some(&basic), &form(&[])).expect("basic") {
            Presented::Basic { client_id, secret } => {
                assert_eq!((client_id.as_str(), secret.as_str()), ("svc:1", "s+cret"))
            }
            other => panic!("{other:?}"),
        }
        let post = form(&[("client_id", "svc"), ("client_secret", "s")]);
        assert!(matches!(presented(None, &post), Ok(Presented::Post { .. })));
        assert!(matches!(presented(Some(&basic), &post), Err(OAuthError::InvalidRequest(_))));
        let assertion = form(&[("client_assertion", "a.b.c"), ("client_assertion_type", "other")]);
        assert!(matches!(presented(None, &assertion), Err(OAuthError::InvalidRequest(_))));
        assert!(matches!(presented(None, &form(&[("client_id", "spa")])), Ok(Presented::Public { .. })));
        assert!(matches!(presented(None, &form(&[])), Ok(Presented::Nothing)));
        assert!(matches!(presented(Some("Basic !!!"), &form(&[])), Err(OAuthError::InvalidClient { basic: true, .. })));
    }
}
