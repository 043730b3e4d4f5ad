//! OAuth 2.1 clients and their secrets. Every change records a security event in the same
//! transaction, and changes what a cached client may do, so each one tells the Database to
//! replace the authorization epoch (see `Operation::changes_standing`).

use std::time::Duration;

use deadpool_postgres::Client;
use time::OffsetDateTime;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use super::Operation;
use super::events::{SecurityEvent, record_in};

/// How a client proves who it is at the token endpoint (RFC 7591 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with one of the client's keys (RFC 7523).
    PrivateKeyJwt,
    /// A public client, which has no credentials.
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] =
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::PrivateKeyJwt, AuthMethod::None];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(raw: &str) -> Option<AuthMethod> {
        AuthMethod::ALL.into_iter().find(|m| m.as_str() == raw)
    }

    /// Whether the client holds a shared secret.
    pub fn uses_secret(self) -> bool {
        matches!(self, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
    }
}

/// What a client is registered with (everything but its id, secrets and timestamps).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMetadata {
    pub client_name: String,
    pub auth_method: AuthMethod,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    /// Where the client may send a user after signing out (exact URIs).
    pub post_logout_redirect_uris: Vec<String>,
    /// Space-separated scopes the client may be granted.
    pub scope: String,
    /// `aud` of its access tokens; `None`: the service's audience.
    pub audience: Option<String>,
    /// Lifetime of its access tokens in seconds; `None`: the service's.
    pub access_token_ttl: Option<i32>,
    pub first_party: bool,
    /// Every sign-in for this client must reach the multi-factor `acr` (a second factor).
    pub require_mfa: bool,
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    pub client_id: String,
    pub metadata: ClientMetadata,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One secret of a client, as its digest, and until when it works (`None`: the current one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDigest {
    pub digest: Vec<u8>,
    pub expires_at: Option<OffsetDateTime>,
}

/// A client and the secrets that still work, for authenticating it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCredentials {
    pub client: ClientRecord,
    pub secrets: Vec<SecretDigest>,
}

const COLUMNS: &str = "client_id, client_name, token_endpoint_auth_method, grant_types, redirect_uris, scope, \
     audience, access_token_ttl, first_party, jwks, jwks_uri, created_at, updated_at, post_logout_redirect_uris, require_mfa";

fn client_from(row: &Row) -> ClientRecord {
    let method: String = row.get("token_endpoint_auth_method");
    ClientRecord {
        client_id: row.get("client_id"),
        metadata: ClientMetadata {
            client_name: row.get("client_name"),
            // The column is only ever written from an `AuthMethod`.
            auth_method: AuthMethod::parse(&method).unwrap_or(AuthMethod::None),
            grant_types: row.get("grant_types"),
            redirect_uris: row.get("redirect_uris"),
            post_logout_redirect_uris: row.get("post_logout_redirect_uris"),
            scope: row.get("scope"),
            audience: row.get("audience"),
            access_token_ttl: row.get("access_token_ttl"),
            first_party: row.get("first_party"),
            require_mfa: row.get("require_mfa"),
            jwks: row.get("jwks"),
            jwks_uri: row.get("jwks_uri"),
        },
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

/// Registers a client with `client_id`, and its first secret's digest if it has one.
#[derive(Debug, Clone)]
pub struct Create {
    pub client_id: String,
    pub metadata: ClientMetadata,
    pub secret_digest: Option<Vec<u8>>,
    /// The admin, or `None` for an operator command.
    pub actor: Option<Uuid>,
}

impl Operation for Create {
    type Output = ClientRecord;

    async fn run(&self, client: &mut Client) -> Result<ClientRecord, Error> {
        let m = &self.metadata;
        let tx = client.transaction().await?;
        let sql = format!(
            "INSERT INTO oauth_clients (client_id, client_name, token_endpoint_auth_method, grant_types, redirect_uris,
                                        scope, audience, access_token_ttl, first_party, jwks, jwks_uri,
                                        post_logout_redirect_uris, require_mfa)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {COLUMNS}"
        );
        let row = super::one(
            &tx,
            &sql,
            &[
                &self.client_id,
                &m.client_name,
                &m.auth_method.as_str(),
                &m.grant_types,
                &m.redirect_uris,
                &m.scope,
                &m.audience,
                &m.access_token_ttl,
                &m.first_party,
                &m.jwks,
                &m.jwks_uri,
                &m.post_logout_redirect_uris,
                &m.require_mfa,
            ],
        )
        .await?;
        if let Some(digest) = &self.secret_digest {
            insert_secret(&tx, &self.client_id, digest).await?;
        }
        let event = SecurityEvent::ClientRegistered {
            client: self.client_id.clone(),
            name: m.client_name.clone(),
            by: self.actor,
        };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(client_from(&row))
    }
}

async fn insert_secret(tx: &deadpool_postgres::Transaction<'_>, client_id: &str, digest: &[u8]) -> Result<(), Error> {
    let sql = "INSERT INTO oauth_client_secrets (id, client_id, digest) VALUES ($1, $2, $3)";
    super::run(tx, sql, &[&Uuid::now_v7(), &client_id, &digest]).await?;
    Ok(())
}

/// One client.
#[derive(Debug, Clone)]
pub struct Get {
    pub client_id: String,
}

impl Operation for Get {
    type Output = Option<ClientRecord>;

    async fn run(&self, client: &mut Client) -> Result<Option<ClientRecord>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM oauth_clients WHERE client_id = $1");
        Ok(super::opt(&*client, &sql, &[&self.client_id]).await?.as_ref().map(client_from))
    }
}

/// A client with the secrets that still work, for authenticating it.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
}

impl Operation for Credentials {
    type Output = Option<ClientCredentials>;

    async fn run(&self, client: &mut Client) -> Result<Option<ClientCredentials>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM oauth_clients WHERE client_id = $1");
        let Some(row) = super::opt(&*client, &sql, &[&self.client_id]).await? else { return Ok(None) };
        let sql = "SELECT digest, expires_at FROM oauth_client_secrets
                   WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC";
        let secrets = super::all(&*client, sql, &[&self.client_id])
            .await?
            .iter()
            .map(|r| SecretDigest { digest: r.get(0), expires_at: r.get(1) })
            .collect();
        Ok(Some(ClientCredentials { client: client_from(&row), secrets }))
    }
}

/// Every client, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct List;

impl Operation for List {
    type Output = Vec<ClientRecord>;

    async fn run(&self, client: &mut Client) -> Result<Vec<ClientRecord>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM oauth_clients ORDER BY created_at, client_id LIMIT 10000");
        Ok(super::all(&*client, &sql, &[]).await?.iter().map(client_from).collect())
    }
}

/// The longest `access_token_ttl` a registered client has, in seconds (`None`: no client sets
/// one). The key commands keep a retired key published until tokens that long have expired.
#[derive(Debug, Clone, Copy)]
pub struct LongestAccessTokenTtl;

impl Operation for LongestAccessTokenTtl {
    type Output = Option<i32>;

    async fn run(&self, client: &mut Client) -> Result<Option<i32>, Error> {
        Ok(super::one(&*client, "SELECT max(access_token_ttl) FROM oauth_clients", &[]).await?.get(0))
    }
}

/// Every scope some registered client may be granted (for discovery's `scopes_supported`).
#[derive(Debug, Clone, Copy)]
pub struct Scopes;

impl Operation for Scopes {
    type Output = Vec<String>;

    async fn run(&self, client: &mut Client) -> Result<Vec<String>, Error> {
        let sql =
            "SELECT DISTINCT s FROM oauth_clients, unnest(string_to_array(scope, ' ')) AS s WHERE s <> '' ORDER BY s";
        Ok(super::all(&*client, sql, &[]).await?.iter().map(|r| r.get(0)).collect())
    }
}

/// Replaces a client's metadata (RFC 7592 style: the whole of it). `None` if there is no such
/// client.
#[derive(Debug, Clone)]
pub struct Update {
    pub client_id: String,
    pub metadata: ClientMetadata,
    pub actor: Option<Uuid>,
}

impl Operation for Update {
    type Output = Option<ClientRecord>;

    fn changes_standing(output: &Self::Output) -> bool {
        output.is_some()
    }

    async fn run(&self, client: &mut Client) -> Result<Option<ClientRecord>, Error> {
        let m = &self.metadata;
        let tx = client.transaction().await?;
        let sql = format!(
            "UPDATE oauth_clients SET client_name = $2, token_endpoint_auth_method = $3, grant_types = $4,
                    redirect_uris = $5, scope = $6, audience = $7, access_token_ttl = $8, first_party = $9,
                    jwks = $10, jwks_uri = $11, post_logout_redirect_uris = $12, require_mfa = $13, updated_at = now()
             WHERE client_id = $1 RETURNING {COLUMNS}"
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
            &self.client_id,
            &m.client_name,
            &m.auth_method.as_str(),
            &m.grant_types,
            &m.redirect_uris,
            &m.scope,
            &m.audience,
            &m.access_token_ttl,
            &m.first_party,
            &m.jwks,
            &m.jwks_uri,
            &m.post_logout_redirect_uris,
            &m.require_mfa,
        ];
        let Some(row) = super::opt(&tx, &sql, &params).await? else { return Ok(None) };
        if !m.auth_method.uses_secret() {
            // A client that no longer authenticates with a secret keeps none.
            super::run(&tx, "DELETE FROM oauth_client_secrets WHERE client_id = $1", &[&self.client_id]).await?;
        }
        record_in(&tx, &SecurityEvent::ClientUpdated { client: self.client_id.clone(), by: self.actor }, None).await?;
        tx.commit().await?;
        Ok(Some(client_from(&row)))
    }
}

/// Gives a client a new secret (its digest); the secrets it had keep working for `overlap`
/// (not at all with zero). Replies with when the previous ones stop, or `None` if there is no
/// such client.
#[derive(Debug, Clone)]
pub struct RotateSecret {
    pub client_id: String,
    pub digest: Vec<u8>,
    pub overlap: Duration,
    pub actor: Option<Uuid>,
}

impl Operation for RotateSecret {
    type Output = Option<OffsetDateTime>;

    fn changes_standing(output: &Self::Output) -> bool {
        output.is_some()
    }

    async fn run(&self, client: &mut Client) -> Result<Option<OffsetDateTime>, Error> {
        let tx = client.transaction().await?;
        let exists = "SELECT now() + make_interval(secs => $2) FROM oauth_clients WHERE client_id = $1 FOR UPDATE";
        let Some(row) = super::opt(&tx, exists, &[&self.client_id, &self.overlap.as_secs_f64()]).await? else {
            return Ok(None);
        };
        let until: OffsetDateTime = row.get(0);
        let shorten = "UPDATE oauth_client_secrets SET expires_at = LEAST(COALESCE(expires_at, $2), $2)
                       WHERE client_id = $1";
        super::run(&tx, shorten, &[&self.client_id, &until]).await?;
        insert_secret(&tx, &self.client_id, &self.digest).await?;
        let event = SecurityEvent::ClientSecretRotated {
            client: self.client_id.clone(),
            by: self.actor,
            overlap_secs: self.overlap.as_secs(),
        };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(Some(until))
    }
}

/// Deletes a client: its secrets and the sessions issued to it go with it. Replies with those
/// sessions (user, session), so that the caller can fence off their access tokens, or `None`
/// if there was no such client.
#[derive(Debug, Clone)]
pub struct Delete {
    pub client_id: String,
    pub actor: Option<Uuid>,
}

impl Operation for Delete {
    type Output = Option<Vec<(Uuid, Uuid)>>;

    fn changes_standing(output: &Self::Output) -> bool {
        output.is_some()
    }

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let tx = client.transaction().await?;
        let lock = "SELECT 1 FROM oauth_clients WHERE client_id = $1 FOR UPDATE";
        if super::opt(&tx, lock, &[&self.client_id]).await?.is_none() {
            return Ok(None);
        }
        let sessions =
            super::all(&tx, "SELECT user_id, id FROM refresh_families WHERE client_id = $1", &[&self.client_id])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        super::run(&tx, "DELETE FROM oauth_clients WHERE client_id = $1", &[&self.client_id]).await?;
        record_in(&tx, &SecurityEvent::ClientDeleted { client: self.client_id.clone(), by: self.actor }, None).await?;
        tx.commit().await?;
        Ok(Some(sessions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_methods_have_their_rfc_7591_names() {
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(AuthMethod::parse("client_secret_jwt"), None);
        assert!(AuthMethod::ClientSecretPost.uses_secret() && !AuthMethod::PrivateKeyJwt.uses_secret());
    }
}
