//! Client authentication, which the token, introspection and revocation endpoints share, with
//! the per-instance cache of registered clients (and, through [`super::remote_keys`], the keys
//! clients publish at their `jwks_uri`).
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

use std::sync::Arc;
use std::time::Duration;

use auth_actors::db::clients::{self, AuthMethod};
use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::redis::client_gate::{self, ClientGate, ClientLimits};
use base64::Engine as _;
use time::OffsetDateTime;

use super::protocol::{ASSERTION_ALGS, ClientEntry, JWT_BEARER, OAuthError, OAuthForm, plausible_client_id};
use crate::app::App;
use crate::authz::Cached;
use crate::domain::Peer;
use crate::flows::error::FlowError;

/// A client that has proved who it is.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub entry: Cached<ClientEntry>,
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
    peer: &Peer,
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
    let redis = &app.services.redis;
    // Failures are counted per (address, client): client ids are public, so a lock of the
    // client itself would hand any stranger a way to shut it out (SPEC §7).
    let address = peer.ip_string().unwrap_or_default();
    let gate =
        redis.run(client_gate::BeginClient { client: client_id.clone(), address: address.clone(), limits }).await?;
    match gate.gate {
        ClientGate::Allowed => {}
        ClientGate::Locked { retry_after } => {
            return Err(OAuthError::Throttled { description: "too many failed authentications", retry_after });
        }
        ClientGate::RateLimited { retry_after } => {
            crate::flows::limits::denied(app, auth_actors::keyspace::LimitClass::Client);
            return Err(OAuthError::Throttled { description: "too many token requests", retry_after });
        }
        ClientGate::Busy { retry_after } => {
            return Err(OAuthError::Throttled { description: "too many authentications under way", retry_after });
        }
    }
    let method = presented.method();
    let verdict = check_credentials(app, &client_id, presented, gate.authz_epoch.as_deref()).await;
    if let Some(limits) = limits {
        let end = client_gate::EndClient {
            client: client_id.clone(),
            address,
            success: verdict.is_ok(),
            threshold: limits.threshold,
            base: l.lockout_base,
            max: l.lockout_max,
        };
        if let Some(lock) = redis.run(end).await? {
            let event = SecurityEvent::ClientLockout { client: client_id.clone(), retry_after_secs: lock.as_secs() };
            app.services.db.run(events::Record { event, ip: peer.ip_string() }).await?;
        }
    }
    match verdict {
        Ok(client) => Ok(client),
        Err(Refused::Because(reason)) => {
            app.metrics.client_auth_failures.get_or_create(&crate::metrics::MethodLabels { method }).inc();
            let event = SecurityEvent::ClientAuthFailed { client: client_id, method, reason };
            app.services.db.run(events::Record { event, ip: peer.ip_string() }).await?;
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
) -> Result<Option<Cached<ClientEntry>>, FlowError> {
    if let Some(epoch) = epoch
        && let Some(entry) = app.clients.get(client_id, epoch)
    {
        return Ok(Some(entry));
    }
    let Some(credentials) = app.services.db.run(clients::Credentials { client_id: client_id.to_string() }).await?
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
    let presented = crate::secret::digest_text(secret);
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
    let fresh =
        app.services.redis.run(client_gate::UseAssertion { client: entry.id().to_string(), jti_digest, ttl }).await?;
    if !fresh {
        return Err(Refused::Because("assertion_replayed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::protocol::tests::form;

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
