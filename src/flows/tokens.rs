//! Token material: access-token claims (RFC 9068 shape, one struct for signing and for
//! verifying), opaque refresh-token secrets, and the refresh cookie.
//!
//! A refresh token is a [`Secret`]: 32 random bytes, base64url-encoded; the database keeps only
//! its SHA-256.
//! When a token is rotated, its successor's secret is stored sealed with a pad derived from the
//! parent's secret (SHA-256 of a domain tag and the secret), so a retry that presents the
//! parent again within the grace window gets the very same successor back.

use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::FlowError;
use crate::app::App;
use crate::config::HttpConfig;
use crate::secret::{self, Secret};

/// The refresh cookie's name over plain HTTP (development).
pub const REFRESH_COOKIE: &str = "refresh_token";
/// Its name when Secure: the `__Host-` prefix makes browsers accept it only from this very
/// host, over HTTPS, with `Path=/` and no `Domain`, so a sibling subdomain cannot plant or
/// overwrite it.
pub const HOST_REFRESH_COOKIE: &str = "__Host-refresh_token";
/// Over plain HTTP the refresh cookie is sent only to the auth routes (a `__Host-` cookie must
/// have `Path=/`).
pub const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
/// The longest `access_token_ttl` a client may register (one day): revocation markers must
/// outlive it (see `logout::fence_ttl`).
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(86_400);
const SEAL_TAG: &[u8] = b"auth-service refresh successor seal v1";

/// The `type` claim: this service's own guard against a token of another kind (an ID token, a
/// refresh token) being accepted where an access token is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
}

/// The claims of an access token, as signed and as verified: a token whose claims do not
/// decode into this struct is not one of ours. The user fields are present in every token
/// issued to a user; `client_id` and `scope` in every token issued through the OAuth token
/// endpoint (RFC 9068), and a token issued to a client itself (`client_credentials`) has the
/// client as its `sub` and no user fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// A v7 uuid: it carries its issue time in milliseconds, which the logout-all marker uses.
    pub jti: Uuid,
    #[serde(rename = "type")]
    pub kind: TokenKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's roles when the token was issued (checks use the current ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The session (refresh-token family) this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// The OAuth client the token was issued to (RFC 9068 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The granted scopes, space-separated (RFC 9068 §2.2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How the user signed in (RFC 8176 values; RFC 9068 §2.2.1): in every token issued to a
    /// user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

impl auth_actors::keys::Claims for AccessClaims {
    fn exp(&self) -> Option<i64> {
        Some(self.exp)
    }
    fn nbf(&self) -> Option<i64> {
        Some(self.nbf)
    }
    fn iat(&self) -> Option<i64> {
        Some(self.iat)
    }
}

impl AccessClaims {
    /// Milliseconds since the epoch at which the token was issued, from its v7 `jti`.
    pub fn issued_ms(&self) -> Option<i64> {
        let (secs, nanos) = self.jti.get_timestamp()?.to_unix();
        Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
    }
}

/// What a successful login or refresh hands back.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
}

/// The OAuth client a user's access token is issued to, with what the client was granted.
#[derive(Debug)]
pub struct IssuedTo<'a> {
    pub client_id: &'a str,
    pub audience: String,
    pub scope: String,
    pub ttl: u64,
}

/// Signs an access token for `user` in session `family`: for this service's own API, or for
/// the client `to` names.
pub async fn issue_access(
    app: &App,
    user: &auth_actors::db::users::UserRecord,
    family: Uuid,
    amr: &[String],
    to: Option<IssuedTo<'_>>,
) -> Result<(String, u64), FlowError> {
    let t = &app.config.tokens;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (aud, ttl, client_id, scope) = match to {
        None => (t.audience.clone(), t.access_ttl.as_secs(), None, None),
        Some(c) => (c.audience, c.ttl, Some(c.client_id.to_string()), Some(c.scope)),
    };
    let claims = AccessClaims {
        iss: t.issuer.clone(),
        sub: user.id.to_string(),
        aud,
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        jti: Uuid::now_v7(),
        kind: TokenKind::Access,
        username: Some(user.username.clone()),
        email: Some(user.email.clone()),
        roles: Some(user.roles.clone()),
        sid: Some(family),
        client_id,
        scope,
        amr: Some(amr.to_vec()),
    };
    let token = app.services.keys.sign("at+jwt", claims).await?;
    app.metrics.tokens_issued.inc();
    Ok((token, ttl))
}

fn pad(parent: &Secret) -> [u8; secret::LEN] {
    let mut input = SEAL_TAG.to_vec();
    input.extend_from_slice(parent.bytes());
    let mut pad = [0u8; secret::LEN];
    pad.copy_from_slice(digest(&SHA256, &input).as_ref());
    pad
}

/// Seals `successor` under the parent's secret.
pub fn seal(parent: &Secret, successor: &Secret) -> Vec<u8> {
    pad(parent).iter().zip(successor.bytes()).map(|(a, b)| a ^ b).collect()
}

/// Recovers the successor sealed under `parent`, as the client-facing token.
pub fn unseal(parent: &Secret, sealed: &[u8]) -> Option<String> {
    let sealed: [u8; secret::LEN] = sealed.try_into().ok()?;
    let mut bytes = pad(parent);
    bytes.iter_mut().zip(sealed).for_each(|(p, s)| *p ^= s);
    Some(Secret::from_bytes(bytes).encode())
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
        let parent = Secret::generate().expect("secret");
        let successor = Secret::generate().expect("secret");
        let successor_token = successor.encode();
        let sealed = seal(&parent, &successor);
        assert_ne!(sealed, successor.bytes());
        assert_eq!(unseal(&parent, &sealed).as_deref(), Some(successor_token.as_str()));
        let other = Secret::generate().expect("secret");
        assert_ne!(unseal(&other, &sealed).as_deref(), Some(successor_token.as_str()));
    }

    #[test]
    fn access_claims_keep_their_shape_and_refuse_other_kinds() {
        let claims = AccessClaims {
            iss: "http://auth.test".into(),
            sub: Uuid::now_v7().to_string(),
            aud: "aud".into(),
            exp: 2,
            iat: 1,
            nbf: 1,
            jti: Uuid::now_v7(),
            kind: TokenKind::Access,
            username: Some("alice".into()),
            email: Some("a@b.io".into()),
            roles: Some(vec!["user".into()]),
            sid: Some(Uuid::now_v7()),
            client_id: None,
            scope: None,
            amr: Some(vec!["pwd".into()]),
        };
        let json = serde_json::to_value(&claims).expect("json");
        let mut keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["amr", "aud", "email", "exp", "iat", "iss", "jti", "nbf", "roles", "sid", "sub", "type", "username"]
        );
        assert_eq!(json["type"], "access");
        assert_eq!(serde_json::from_value::<AccessClaims>(json.clone()).expect("round trip"), claims);
        let mut refresh = json;
        refresh["type"] = "refresh".into();
        assert!(serde_json::from_value::<AccessClaims>(refresh).is_err());
        let issued = claims.issued_ms().expect("v7");
        assert!((issued - OffsetDateTime::now_utc().unix_timestamp() * 1000).abs() < 5_000);
    }
}
