//! Token material: access-token claims (RFC 9068 shape), opaque refresh-token secrets, and the
//! refresh cookie.
//!
//! A refresh token is 32 random bytes, base64url-encoded. The database keeps only its SHA-256.
//! When a token is rotated, its successor's secret is stored sealed with a pad derived from the
//! parent's secret (SHA-256 of a domain tag and the secret), so a retry that presents the
//! parent again within the grace window gets the very same successor back.

use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::App;
use crate::config::HttpConfig;
use crate::http::ApiError;

/// The refresh cookie's name over plain HTTP (development).
pub const REFRESH_COOKIE: &str = "refresh_token";
/// Its name when Secure: the `__Host-` prefix makes browsers accept it only from this very
/// host, over HTTPS, with `Path=/` and no `Domain`, so a sibling subdomain cannot plant or
/// overwrite it.
pub const HOST_REFRESH_COOKIE: &str = "__Host-refresh_token";
/// Over plain HTTP the refresh cookie is sent only to the auth routes (a `__Host-` cookie must
/// have `Path=/`).
pub const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
const SECRET_LEN: usize = 32;
const SEAL_TAG: &[u8] = b"auth-service refresh successor seal v1";

/// The claims of an access token.
#[derive(Debug, Serialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub username: String,
    pub email: String,
    pub roles: Vec<String>,
    /// The session (refresh-token family) this token belongs to.
    pub sid: String,
}

/// What a successful login or refresh hands back.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
}

/// Signs an access token for `user` in session `family`.
pub async fn issue_access(
    app: &App,
    user: &auth_actors::db::users::UserRecord,
    family: Uuid,
) -> Result<(String, u64), ApiError> {
    let t = &app.config.tokens;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let ttl = t.access_ttl.as_secs();
    let claims = AccessClaims {
        iss: t.issuer.clone(),
        sub: user.id.to_string(),
        aud: t.audience.clone(),
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        // A v7 uuid carries its issue time in milliseconds, which the logout-all marker uses.
        jti: Uuid::now_v7().to_string(),
        kind: "access",
        username: user.username.clone(),
        email: user.email.clone(),
        roles: user.roles.clone(),
        sid: family.to_string(),
    };
    let token = app.services.keys.sign("at+jwt", claims).await?;
    app.metrics.tokens_issued.inc();
    Ok((token, ttl))
}

/// A new refresh-token secret, as sent to the client.
pub fn new_refresh_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; SECRET_LEN];
    SystemRandom::new().fill(&mut bytes).map_err(|_| ApiError::unavailable("random number generator"))?;
    Ok(B64.encode(bytes))
}

/// Decodes a presented refresh token; anything but 32 base64url bytes is not ours.
pub fn decode_refresh(token: &str) -> Option<Vec<u8>> {
    let bytes = B64.decode(token.trim()).ok()?;
    (bytes.len() == SECRET_LEN).then_some(bytes)
}

/// The stored form of a refresh-token secret.
pub fn refresh_hash(secret: &[u8]) -> Vec<u8> {
    digest(&SHA256, secret).as_ref().to_vec()
}

fn pad(parent_secret: &[u8]) -> Vec<u8> {
    let mut input = SEAL_TAG.to_vec();
    input.extend_from_slice(parent_secret);
    digest(&SHA256, &input).as_ref().to_vec()
}

/// Seals `successor` (a secret) under the parent's secret.
pub fn seal(parent_secret: &[u8], successor: &[u8]) -> Vec<u8> {
    pad(parent_secret).iter().zip(successor).map(|(a, b)| a ^ b).collect()
}

/// Recovers the successor secret sealed under `parent_secret`, as the client-facing token.
pub fn unseal(parent_secret: &[u8], sealed: &[u8]) -> Option<String> {
    (sealed.len() == SECRET_LEN).then(|| B64.encode(seal(parent_secret, sealed)))
}

/// The name of the refresh cookie, the only one read back.
pub fn refresh_cookie_name(http: &HttpConfig) -> &'static str {
    if http.cookie_secure { HOST_REFRESH_COOKIE } else { REFRESH_COOKIE }
}

/// The `Set-Cookie` value carrying a refresh token.
pub fn refresh_cookie(http: &HttpConfig, token: &str, max_age: Duration) -> String {
    let (name, path, secure) = if http.cookie_secure {
        (HOST_REFRESH_COOKIE, "/", "; Secure")
    } else {
        (REFRESH_COOKIE, REFRESH_COOKIE_PATH, "")
    };
    format!("{name}={token}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={}{secure}", max_age.as_secs())
}

/// The `Set-Cookie` value that clears the refresh cookie.
pub fn clear_cookie(http: &HttpConfig) -> String {
    refresh_cookie(http, "", Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_successor_unseals_only_with_its_parent() {
        let parent = decode_refresh(&new_refresh_secret().expect("secret")).expect("decode");
        let successor_token = new_refresh_secret().expect("secret");
        let successor = decode_refresh(&successor_token).expect("decode");
        let sealed = seal(&parent, &successor);
        assert_ne!(sealed, successor);
        assert_eq!(unseal(&parent, &sealed).as_deref(), Some(successor_token.as_str()));
        let other = decode_refresh(&new_refresh_secret().expect("secret")).expect("decode");
        assert_ne!(unseal(&other, &sealed).as_deref(), Some(successor_token.as_str()));
    }

    #[test]
    fn only_32_byte_base64url_tokens_are_refresh_tokens() {
        assert!(decode_refresh("short").is_none());
        assert!(decode_refresh("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln").is_none());
    }
}
