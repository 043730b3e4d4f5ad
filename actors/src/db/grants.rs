//! The browser flow's grants: authorization codes and remembered consent.
//!
//! A code is exchanged by one statement (`UPDATE ... WHERE used_at IS NULL` that only the client
//! it was issued to can win, and the session it opens); a second exchange finds it used and
//! learns the session the first one opened, so that session can be revoked (RFC 6749 §4.1.2,
//! OAuth 2.1 §4.1.3).

use std::time::Duration;

use deadpool_postgres::Client;
use time::OffsetDateTime;
use tokio_postgres::Error;
use uuid::Uuid;

use super::Operation;
use super::sessions::NewToken;
use super::users::{USER_COLUMNS, UserRecord};

/// A code to store (only its digest), with everything it is bound to.
#[derive(Debug, Clone)]
pub struct IssueCode {
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub user_id: Uuid,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: OffsetDateTime,
    /// How the user signed in (RFC 8176), carried to the session and the ID token.
    pub amr: Vec<String>,
    pub ttl: Duration,
}

impl Operation for IssueCode {
    type Output = ();

    async fn run(&self, client: &mut Client) -> Result<(), Error> {
        // Codes a day past their expiry are purged as new ones are issued, a batch at a time;
        // until then a replay is still recognised as one.
        let sql = "WITH purged AS (
                       DELETE FROM oauth_codes WHERE code_hash IN (
                           SELECT code_hash FROM oauth_codes WHERE expires_at < now() - interval '1 day' LIMIT 100)
                   )
                   INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, scope, code_challenge, nonce,
                                            auth_time, expires_at, amr)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9), $10)";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &self.code_hash,
            &self.client_id,
            &self.user_id,
            &self.redirect_uri,
            &self.scope,
            &self.code_challenge,
            &self.nonce,
            &self.auth_time,
            &self.ttl.as_secs_f64(),
            &self.amr,
        ];
        super::run(&*client, sql, &params).await?;
        Ok(())
    }
}

/// Why a live code was used up without opening a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The `redirect_uri` differs from the authorization request's.
    RedirectUri,
    /// The PKCE verifier does not hash to the code's challenge.
    Verifier,
    /// The user is inactive.
    UserGone,
}

/// What presenting a code led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// The code is used and the session open: the user (with current roles) and what the code
    /// carried.
    Started {
        user: UserRecord,
        scope: String,
        nonce: Option<String>,
        auth_time: OffsetDateTime,
        offline: bool,
        /// How the user signed in (RFC 8176).
        amr: Vec<String>,
    },
    /// The code was live and is now used, but a binding did not hold: no session.
    Refused(Refusal),
    /// The code was used before: the session its first exchange opened, if any, to revoke.
    Replayed { user_id: Uuid, family_id: Option<Uuid> },
    /// Unknown, expired, or issued to another client.
    Invalid,
}

/// Exchanges the code whose digest is `code_hash`, if it is live and was issued to `client_id`:
/// uses it up and, when the redirect URI, the PKCE challenge (`challenge` = S256 of the
/// verifier) and the user's standing hold, opens the session it issues (a family of kind
/// `oauth` bound to the client and scope, recorded on the code, with its first refresh token
/// when `offline_access` was granted and `refresh_allowed`).
///
/// One statement does it all, so a code is never seen used without the session its exchange
/// opened: a twin presented meanwhile waits on the code's row, then finds it used and learns
/// that session, which it revokes (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3).
#[derive(Debug, Clone)]
pub struct ExchangeCode {
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub family_id: Uuid,
    pub token: NewToken,
    pub refresh_allowed: bool,
    /// How long the session lives without a refresh token: the access token's lifetime.
    pub access_ttl: Duration,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

impl Operation for ExchangeCode {
    type Output = Exchange;

    async fn run(&self, client: &mut Client) -> Result<Exchange, Error> {
        let sql = format!(
            "WITH c AS (
                 UPDATE oauth_codes SET used_at = now(), family_id = CASE
                     WHEN redirect_uri = $3 AND code_challenge = $4
                          AND EXISTS (SELECT 1 FROM users WHERE id = oauth_codes.user_id AND is_active)
                     THEN $5::uuid END
                 WHERE code_hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > now()
                 RETURNING user_id, scope, nonce, auth_time, family_id, COALESCE(amr, '{{pwd}}') AS amr,
                           redirect_uri = $3 AS uri_ok, code_challenge = $4 AS verifier_ok
             ), o AS (
                 SELECT c.*, ($9 AND 'offline_access' = ANY (string_to_array(c.scope, ' '))) AS offline FROM c
             ), f AS (
                 INSERT INTO refresh_families (id, user_id, expires_at, ip_address, user_agent, kind, auth_time,
                                               client_id, scope, amr)
                 SELECT family_id, user_id,
                        CASE WHEN offline THEN $8 ELSE now() + make_interval(secs => $10) END,
                        $11, $12, 'oauth', auth_time, $2, scope, amr
                 FROM o WHERE family_id IS NOT NULL
                 RETURNING id
             ), t AS (
                 INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, expires_at)
                 SELECT $6, $7, f.id, o.user_id, $8 FROM o JOIN f ON f.id = o.family_id WHERE o.offline
             )
             SELECT o.uri_ok, o.verifier_ok, o.family_id, o.scope, o.nonce, o.auth_time, o.offline, o.amr, {USER_COLUMNS}
             FROM o JOIN users u ON u.id = o.user_id"
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
            &self.code_hash,
            &self.client_id,
            &self.redirect_uri,
            &self.challenge,
            &self.family_id,
            &self.token.id,
            &self.token.hash,
            &self.token.expires_at,
            &self.refresh_allowed,
            &self.access_ttl.as_secs_f64(),
            &self.ip_address,
            &self.user_agent,
        ];
        if let Some(r) = super::opt(&*client, &sql, &params).await? {
            let (uri_ok, verifier_ok, family): (bool, bool, Option<Uuid>) = (r.get(0), r.get(1), r.get(2));
            return Ok(match (uri_ok, verifier_ok, family) {
                (false, _, _) => Exchange::Refused(Refusal::RedirectUri),
                (_, false, _) => Exchange::Refused(Refusal::Verifier),
                (_, _, None) => Exchange::Refused(Refusal::UserGone),
                (true, true, Some(_)) => Exchange::Started {
                    user: super::users::user_from(&r),
                    scope: r.get(3),
                    nonce: r.get(4),
                    auth_time: r.get(5),
                    offline: r.get(6),
                    amr: r.get(7),
                },
            });
        }
        let used = "UPDATE oauth_codes SET replayed_at = now()
                    WHERE code_hash = $1 AND client_id = $2 AND used_at IS NOT NULL RETURNING user_id, family_id";
        Ok(match super::opt(&*client, used, &[&self.code_hash, &self.client_id]).await? {
            Some(r) => Exchange::Replayed { user_id: r.get(0), family_id: r.get(1) },
            None => Exchange::Invalid,
        })
    }
}

/// The scopes `user_id` has let `client_id` have, if any.
#[derive(Debug, Clone)]
pub struct Consent {
    pub user_id: Uuid,
    pub client_id: String,
}

impl Operation for Consent {
    type Output = Option<String>;

    async fn run(&self, client: &mut Client) -> Result<Option<String>, Error> {
        let sql = "SELECT scope FROM oauth_consents WHERE user_id = $1 AND client_id = $2";
        Ok(super::opt(&*client, sql, &[&self.user_id, &self.client_id]).await?.map(|r| r.get(0)))
    }
}

/// Remembers that `user_id` lets `client_id` have `scope` (added to what it had).
#[derive(Debug, Clone)]
pub struct GrantConsent {
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
}

impl Operation for GrantConsent {
    type Output = ();

    async fn run(&self, client: &mut Client) -> Result<(), Error> {
        let sql = "INSERT INTO oauth_consents (user_id, client_id, scope) VALUES ($1, $2, $3)
                   ON CONFLICT (user_id, client_id) DO UPDATE SET granted_at = now(), scope = (
                       SELECT string_agg(DISTINCT s, ' ' ORDER BY s) FROM unnest(
                           string_to_array(oauth_consents.scope, ' ') || string_to_array(EXCLUDED.scope, ' ')) AS s
                       WHERE s <> '')";
        super::run(&*client, sql, &[&self.user_id, &self.client_id, &self.scope]).await?;
        Ok(())
    }
}

/// One remembered consent, as its user lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub granted_at: OffsetDateTime,
}

/// The consents a user has given, newest first.
#[derive(Debug, Clone, Copy)]
pub struct ListConsents {
    pub user_id: Uuid,
}

impl Operation for ListConsents {
    type Output = Vec<ConsentRow>;

    async fn run(&self, client: &mut Client) -> Result<Vec<ConsentRow>, Error> {
        let sql = "SELECT c.client_id, o.client_name, c.scope, c.granted_at FROM oauth_consents c
                   JOIN oauth_clients o ON o.client_id = c.client_id WHERE c.user_id = $1 ORDER BY c.granted_at DESC";
        Ok(super::all(&*client, sql, &[&self.user_id])
            .await?
            .iter()
            .map(|r| ConsentRow { client_id: r.get(0), client_name: r.get(1), scope: r.get(2), granted_at: r.get(3) })
            .collect())
    }
}

/// Takes back a consent; the client's sessions of that user end with it. Replies with those
/// sessions, or `None` if there was no such consent.
#[derive(Debug, Clone)]
pub struct RevokeConsent {
    pub user_id: Uuid,
    pub client_id: String,
}

impl Operation for RevokeConsent {
    type Output = Option<Vec<Uuid>>;

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let tx = client.transaction().await?;
        let deleted = super::run(
            &tx,
            "DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2",
            &[&self.user_id, &self.client_id],
        )
        .await?;
        if deleted == 0 {
            return Ok(None);
        }
        let sessions = super::all(
            &tx,
            "UPDATE refresh_families SET revoked_at = now(), revoke_reason = 'consent_revoked'
             WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL RETURNING id",
            &[&self.user_id, &self.client_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        tx.commit().await?;
        Ok(Some(sessions))
    }
}
