//! The client registry, for admins (`/api/v1/clients`) and the CLI (`clients ...`): RFC 7591
//! client metadata in, registered clients out.
//!
//! Registration checks the metadata the way RFC 7591 §2 and OAuth 2.1 ask: only the grants the
//! service implements (no implicit, no password), only the authentication methods it implements,
//! redirect URIs and `jwks_uri` by the rules of [`crate::uri`] (parsed as browsers parse them; a
//! `jwks_uri` must point at a public address), scope tokens of RFC 6749 §3.3, and for
//! `private_key_jwt` exactly one of `jwks` (public keys only) and `jwks_uri`. Unknown metadata is
//! ignored, as RFC 7591 §2 requires. A client that authenticates with a secret gets one of 256
//! random bits, shown once and stored as its SHA-256.

use std::time::Duration;

use auth_actors::db::clients::{self, AuthMethod, ClientMetadata, ClientRecord};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::protocol::{AUTH_METHODS, GRANT_TYPES, valid_scope_token};
use crate::app::App;
use crate::config::{MAX_SECRET_OVERLAP, OAuthConfig};
use crate::domain::FieldError;
use crate::flows::error::{Entity, FlowError};
use crate::flows::tokens::MAX_ACCESS_TOKEN_TTL;
use crate::secret::{self, Secret};

/// Client metadata as a registration request sends it (RFC 7591 §2), plus this service's own
/// `audience`, `access_token_ttl`, `first_party` and `require_mfa`. Fields it does not know are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct MetadataInput {
    pub client_name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub scope: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
    pub audience: Option<String>,
    pub access_token_ttl: Option<i64>,
    pub first_party: Option<bool>,
    pub require_mfa: Option<bool>,
}

fn metadata_error(description: impl Into<String>) -> FlowError {
    FlowError::ClientMetadata { code: "invalid_client_metadata", description: description.into() }
}

fn redirect_error(description: impl Into<String>) -> FlowError {
    FlowError::ClientMetadata { code: "invalid_redirect_uri", description: description.into() }
}

/// An inline JWK Set of public signing keys the service can verify assertions with.
fn valid_jwks(jwks: &serde_json::Value) -> Result<(), FlowError> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|e| metadata_error(format!("jwks is not a JWK Set: {e}")))?;
    if set.keys.is_empty() {
        return Err(metadata_error("jwks holds no key"));
    }
    let private = jwks["keys"].as_array().is_some_and(|keys| keys.iter().any(|k| k.get("d").is_some()));
    if private {
        return Err(metadata_error("jwks must hold public keys only"));
    }
    for key in &set.keys {
        jsonwebtoken::DecodingKey::from_jwk(key)
            .map_err(|e| metadata_error(format!("jwks holds a key that cannot verify signatures: {e}")))?;
    }
    Ok(())
}

/// Checks registration metadata and fills in the defaults (RFC 7591 §2: `client_secret_basic`;
/// here `client_credentials`, since that is what a client of this service can use today).
pub async fn metadata(input: MetadataInput, oauth: &OAuthConfig) -> Result<ClientMetadata, FlowError> {
    let client_name = input.client_name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let client_name = client_name.ok_or_else(|| metadata_error("client_name is required"))?;
    if client_name.chars().count() > 200 {
        return Err(metadata_error("client_name must be at most 200 characters"));
    }
    let method = input.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic");
    let auth_method = AuthMethod::parse(method)
        .filter(|m| AUTH_METHODS.contains(m))
        .ok_or_else(|| metadata_error(format!("token_endpoint_auth_method {method:?} is not supported")))?;
    let mut grant_types = input.grant_types.unwrap_or_else(|| vec!["client_credentials".into()]);
    grant_types.sort();
    grant_types.dedup();
    if grant_types.is_empty() {
        return Err(metadata_error("grant_types must not be empty"));
    }
    if let Some(g) = grant_types.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(metadata_error(format!("grant type {g:?} is not supported")));
    }
    let redirect_uris = input.redirect_uris.unwrap_or_default();
    let post_logout_redirect_uris = input.post_logout_redirect_uris.unwrap_or_default();
    for uri in redirect_uris.iter().chain(&post_logout_redirect_uris) {
        crate::uri::redirect_uri(uri).map_err(|e| redirect_error(format!("redirect URI {uri:?} {e}")))?;
    }
    if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err(redirect_error("the authorization_code grant needs at least one redirect URI"));
    }
    if auth_method == AuthMethod::None && grant_types.iter().any(|g| g == "client_credentials") {
        return Err(metadata_error("a public client (token_endpoint_auth_method none) cannot use client_credentials"));
    }
    if auth_method == AuthMethod::None && !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(metadata_error(
            "a public client (token_endpoint_auth_method none) needs the authorization_code grant",
        ));
    }
    let scope = input.scope.unwrap_or_default();
    let mut scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if let Some(bad) = scopes.iter().find(|s| !valid_scope_token(s)) {
        return Err(metadata_error(format!("scope token {bad:?} has characters RFC 6749 §3.3 does not allow")));
    }
    scopes.sort_unstable();
    scopes.dedup();
    let (jwks, jwks_uri) = match (auth_method, input.jwks, input.jwks_uri) {
        (AuthMethod::PrivateKeyJwt, Some(_), Some(_)) => {
            return Err(metadata_error("give jwks or jwks_uri, not both"));
        }
        (AuthMethod::PrivateKeyJwt, Some(jwks), None) => {
            valid_jwks(&jwks)?;
            (Some(jwks), None)
        }
        (AuthMethod::PrivateKeyJwt, None, Some(uri)) => {
            let url = crate::uri::jwks_uri(&uri, oauth.jwks_allow_http)
                .map_err(|e| metadata_error(format!("jwks_uri {uri:?} {e}")))?;
            crate::uri::check_target(&url, oauth.jwks_allow_private)
                .await
                .map_err(|e| metadata_error(format!("jwks_uri {uri:?} {e}")))?;
            (None, Some(uri))
        }
        (AuthMethod::PrivateKeyJwt, None, None) => {
            return Err(metadata_error("private_key_jwt needs jwks or jwks_uri"));
        }
        (_, None, None) => (None, None),
        (_, _, _) => return Err(metadata_error("jwks and jwks_uri are for private_key_jwt clients only")),
    };
    let audience = input.audience.map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
    if audience.as_ref().is_some_and(|a| a.len() > 200) {
        return Err(metadata_error("audience must be at most 200 characters"));
    }
    let access_token_ttl = match input.access_token_ttl {
        None => None,
        Some(ttl) if (60..=MAX_ACCESS_TOKEN_TTL.as_secs() as i64).contains(&ttl) => Some(ttl as i32),
        Some(_) => return Err(metadata_error("access_token_ttl must be between 60 and 86400 seconds")),
    };
    Ok(ClientMetadata {
        client_name,
        auth_method,
        grant_types,
        redirect_uris,
        post_logout_redirect_uris,
        scope: scopes.join(" "),
        audience,
        access_token_ttl,
        first_party: input.first_party.unwrap_or(false),
        require_mfa: input.require_mfa.unwrap_or(false),
        jwks,
        jwks_uri,
    })
}

/// A new client secret: shown once, stored as the digest of its text.
pub fn new_secret() -> Result<(String, Vec<u8>), FlowError> {
    let secret = Secret::generate()?.encode();
    let digest = secret::digest_text(&secret);
    Ok((secret, digest))
}

pub fn new_client_id() -> Result<String, FlowError> {
    Ok(B64.encode(secret::random::<16>()?))
}

/// A registered client, and its secret when one was just made.
#[derive(Debug)]
pub struct Registered {
    pub client: ClientRecord,
    pub secret: Option<String>,
}

/// Only a first-party client may be registered for this service's own API: a token for
/// `api_audience` acts as its user on every `/api/v1` route, which a consent to a third-party
/// app must never allow (SPEC §7, "Who may use a token where").
pub fn check_audience(metadata: &ClientMetadata, api_audience: &str) -> Result<(), FlowError> {
    if metadata.audience.as_deref() == Some(api_audience) && !metadata.first_party {
        return Err(metadata_error("only a first_party client may be registered for this service's own API audience"));
    }
    Ok(())
}

pub async fn register(app: &App, actor: Option<Uuid>, input: MetadataInput) -> Result<Registered, FlowError> {
    let metadata = metadata(input, &app.config.oauth).await?;
    check_audience(&metadata, &app.config.tokens.audience)?;
    let (secret, digest) = match metadata.auth_method.uses_secret() {
        true => new_secret().map(|(s, d)| (Some(s), Some(d)))?,
        false => (None, None),
    };
    let create = clients::Create { client_id: new_client_id()?, metadata, secret_digest: digest, actor };
    Ok(Registered { client: app.services.db.run(create).await?, secret })
}

pub async fn list(app: &App) -> Result<Vec<ClientRecord>, FlowError> {
    Ok(app.services.db.run(clients::List).await?)
}

pub async fn show(app: &App, client_id: &str) -> Result<ClientRecord, FlowError> {
    let get = clients::Get { client_id: client_id.to_string() };
    app.services.db.run(get).await?.ok_or(FlowError::NotFound(Entity::Client))
}

/// Replaces a client's metadata. A client that starts using a secret gets one (returned once).
pub async fn update(
    app: &App,
    actor: Option<Uuid>,
    client_id: &str,
    input: MetadataInput,
) -> Result<Registered, FlowError> {
    let metadata = metadata(input, &app.config.oauth).await?;
    check_audience(&metadata, &app.config.tokens.audience)?;
    let before = show(app, client_id).await?;
    let needs_secret = metadata.auth_method.uses_secret() && !before.metadata.auth_method.uses_secret();
    let update = clients::Update { client_id: client_id.to_string(), metadata, actor };
    let client = app.services.db.run(update).await?.ok_or(FlowError::NotFound(Entity::Client))?;
    let secret = match needs_secret {
        true => Some(rotate_secret(app, actor, client_id, Some(Duration::ZERO)).await?.0),
        false => None,
    };
    Ok(Registered { client, secret })
}

/// Gives a secret-using client a new secret; the old ones keep working `overlap` (default
/// `CLIENT_SECRET_OVERLAP`). Returns the new secret and when the old ones stop.
pub async fn rotate_secret(
    app: &App,
    actor: Option<Uuid>,
    client_id: &str,
    overlap: Option<Duration>,
) -> Result<(String, OffsetDateTime), FlowError> {
    let client = show(app, client_id).await?;
    if !client.metadata.auth_method.uses_secret() {
        return Err(metadata_error(format!(
            "client {client_id} authenticates with {}, not with a secret",
            client.metadata.auth_method.as_str()
        )));
    }
    let overlap = overlap.unwrap_or(app.config.oauth.secret_overlap);
    if overlap > MAX_SECRET_OVERLAP {
        return Err(FieldError::new("overlap_seconds", "overlap_seconds must be at most 2592000 (30 days)").into());
    }
    let (secret, digest) = new_secret()?;
    let rotate = clients::RotateSecret { client_id: client_id.to_string(), digest, overlap, actor };
    let until = app.services.db.run(rotate).await?.ok_or(FlowError::NotFound(Entity::Client))?;
    Ok((secret, until))
}

/// Deletes a client; the sessions issued to it end, and their access tokens are fenced off.
pub async fn delete(app: &App, actor: Option<Uuid>, client_id: &str) -> Result<(), FlowError> {
    let delete = clients::Delete { client_id: client_id.to_string(), actor };
    let sessions = app.services.db.run(delete).await?.ok_or(FlowError::NotFound(Entity::Client))?;
    for (user, session) in sessions {
        crate::flows::logout::fence_sessions(app, user, vec![session]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::protocol::plausible_client_id;

    fn oauth() -> OAuthConfig {
        OAuthConfig {
            secret_overlap: Duration::from_secs(60),
            assertion_max_age: Duration::from_secs(300),
            jwks_allow_http: false,
            jwks_allow_private: false,
            browser_session_ttl: Duration::from_secs(3600),
        }
    }

    fn input(name: &str) -> MetadataInput {
        MetadataInput { client_name: Some(name.into()), ..Default::default() }
    }

    #[tokio::test]
    async fn registration_fills_in_the_defaults_and_sorts_the_scopes() {
        let m = metadata(MetadataInput { scope: Some("write read read".into()), ..input("svc") }, &oauth())
            .await
            .expect("ok");
        assert_eq!(m.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(m.grant_types, ["client_credentials"]);
        assert_eq!(m.scope, "read write");
    }

    #[tokio::test]
    async fn an_unsafe_redirect_uri_is_an_invalid_redirect_uri() {
        for bad in ["http://evil.example/cb", "http://evil.example\\@127.0.0.1/cb", "https://a.example/cb#x"] {
            let input = MetadataInput { redirect_uris: Some(vec![bad.into()]), ..input("a") };
            let refused = metadata(input, &oauth()).await;
            assert!(matches!(refused, Err(FlowError::ClientMetadata { code: "invalid_redirect_uri", .. })), "{bad}");
        }
    }

    #[tokio::test]
    async fn unsupported_grants_methods_and_key_material_are_refused() {
        let cases = [
            MetadataInput { grant_types: Some(vec!["password".into()]), ..input("a") },
            MetadataInput { grant_types: Some(vec!["implicit".into()]), ..input("a") },
            MetadataInput { token_endpoint_auth_method: Some("client_secret_jwt".into()), ..input("a") },
            MetadataInput { token_endpoint_auth_method: Some("private_key_jwt".into()), ..input("a") },
            MetadataInput {
                token_endpoint_auth_method: Some("private_key_jwt".into()),
                jwks_uri: Some("http://keys.example/jwks".into()),
                ..input("a")
            },
            MetadataInput {
                token_endpoint_auth_method: Some("private_key_jwt".into()),
                jwks_uri: Some("https://169.254.169.254/jwks".into()),
                ..input("a")
            },
            MetadataInput { jwks_uri: Some("https://keys.example/jwks".into()), ..input("a") },
            MetadataInput { scope: Some("a\"b".into()), ..input("a") },
            MetadataInput { client_name: None, ..Default::default() },
        ];
        for case in cases {
            let debug = format!("{case:?}");
            assert!(
                matches!(
                    metadata(case, &oauth()).await,
                    Err(FlowError::ClientMetadata { code: "invalid_client_metadata", .. })
                ),
                "{debug}"
            );
        }
    }

    #[test]
    fn client_ids_and_secrets_are_random_and_safe() {
        let id = new_client_id().expect("id");
        assert_eq!(id.len(), 22);
        assert!(plausible_client_id(&id) && !plausible_client_id("a{b}") && !plausible_client_id(""));
        let (secret, digest) = new_secret().expect("secret");
        assert_eq!(B64.decode(&secret).expect("b64").len(), 32);
        assert_eq!(digest, secret::digest_text(&secret));
    }
}
