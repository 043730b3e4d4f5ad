//! The vocabulary of the provider, shared by every endpoint and importing none of them: the
//! protocol's errors (RFC 6749 §5.2) and form, what the token endpoint answers, a registered
//! client as the endpoints use it, the grants, methods, scopes and algorithms the service
//! implements, and the PKCE transform (RFC 7636).

use std::time::Duration;

use auth_actors::db::clients::{self, AuthMethod, ClientCredentials};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::JwkSet;

use crate::flows::error::FlowError;
use crate::metrics::GrantOutcome;

/// The grants a client may be registered for.
pub const GRANT_TYPES: &[&str] = &["authorization_code", "client_credentials", "refresh_token"];

/// The authentication methods a client may be registered with (`none`: a public client, such as
/// a mobile or single-page application, which holds no secret and must use PKCE).
pub const AUTH_METHODS: &[AuthMethod] =
    &[AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::PrivateKeyJwt, AuthMethod::None];

/// The OpenID Connect scopes: a client must be allowed them to ask for them.
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "roles", "offline_access"];

/// The algorithms a `private_key_jwt` assertion may be signed with.
pub const ASSERTION_ALGS: &[&str] = &["RS256", "ES256"];

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

    pub fn outcome(&self) -> GrantOutcome {
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

impl From<auth_actors::db::DbError> for OAuthError {
    fn from(e: auth_actors::db::DbError) -> Self {
        OAuthError::Flow(e.into())
    }
}

impl From<auth_actors::redis::RedisError> for OAuthError {
    fn from(e: auth_actors::redis::RedisError) -> Self {
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

/// OAuth clients as the token endpoint authenticates them, by client id, filed under the
/// authorization epoch like callers' standing (see [`crate::authz`]).
pub type ClientCache = crate::authz::EpochCache<String, ClientEntry>;

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
    pub fn allows_scopes(&self, requested: &str) -> bool {
        let allowed: Vec<&str> = self.metadata().scope.split(' ').collect();
        requested.split(' ').filter(|s| !s.is_empty()).all(|s| allowed.contains(&s))
    }
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

impl TokenResponse {
    /// A Bearer token response; a grant with no scope leaves `scope` out.
    pub fn bearer(
        access_token: String,
        expires_in: u64,
        scope: String,
        refresh_token: Option<String>,
    ) -> TokenResponse {
        TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope: Some(scope).filter(|s| !s.is_empty()),
            refresh_token,
            id_token: None,
        }
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn valid_scope_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether `id` has the shape of a client id this service could have issued (it is then safe in
/// a Redis key and a log line).
pub fn plausible_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]` (and a challenge has the same shape).
pub fn valid_pkce(value: &str) -> bool {
    (43..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 §4.6: the challenge a verifier answers, `BASE64URL(SHA256(code_verifier))`.
pub fn s256(verifier: &str) -> String {
    B64.encode(digest(&SHA256, verifier.as_bytes()).as_ref())
}

pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A form from literal pairs, for tests.
    pub(crate) fn form(pairs: &[(&str, &str)]) -> OAuthForm {
        OAuthForm::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).expect("form")
    }

    #[test]
    fn a_parameter_given_twice_is_an_invalid_request_and_an_empty_one_is_absent() {
        let twice = vec![("scope".to_string(), "a".to_string()), ("scope".to_string(), "b".to_string())];
        assert!(matches!(OAuthForm::new(twice), Err(OAuthError::InvalidRequest(_))));
        assert_eq!(form(&[("scope", "")]).get("scope"), None);
    }

    #[test]
    fn pkce_s256_is_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_pkce(verifier));
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(!valid_pkce("short"));
    }
}
