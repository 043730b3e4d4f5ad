//! Refresh tokens and the sessions (token families) they belong to.
//!
//! Rotation is one compare-and-swap: the `UPDATE ... WHERE rotated_at IS NULL` that marks the
//! presented token rotated succeeds for exactly one caller, whatever the concurrency; the row
//! lock makes every other caller wait for that winner's commit and then see its successor.
//! A caller that loses within the grace window gets the winner's successor (sealed under the
//! parent token, see V5), at most `grace_retries` times per token; one that presents a rotated
//! token after the window, or once more than that, revokes the whole family. No rotation
//! carries a session past `created_at + max_lifetime`.
//!
//! Locks are taken in one order everywhere: a refresh token row, then its family and user (the
//! rotation statement). Revocation writes family rows only, never token rows, so it never
//! waits on a token a rotation holds; user deletion revokes the families first, in a
//! transaction of its own, then locks the user's tokens before it deletes the user. A session
//! starts only under a share lock on its user row that still holds the password version the
//! login verified, so it cannot slip in beside a password change.

use std::time::Duration;

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tokio_postgres::Error;
use uuid::Uuid;

use super::Operation;
use super::events::{self, SecurityEvent};
use super::users::{self, UserRecord};

/// A refresh token to store: its id, the SHA-256 of its secret, and when it expires.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: Uuid,
    pub hash: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

/// A new session: the family and its first token, plus the login that opened it.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: Uuid,
    pub family_id: Uuid,
    /// `api` (a login of /api/v1/auth) or `browser` (the hosted sign-in's cookie).
    pub kind: SessionKind,
    pub token: NewToken,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// The password version the login verified: the session starts only if it is still
    /// current, so a login that raced a password change fails.
    pub password_version: i32,
    /// How the user signed in (RFC 8176 `amr` values: `pwd`, `otp`, `hwk`, `swk`, `mfa`).
    pub amr: Vec<String>,
}

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A login of `/api/v1/auth`: its refresh token rotates at `/api/v1/auth/refresh`.
    Api,
    /// The hosted sign-in: its token is the browser's session cookie, which never rotates.
    Browser,
    /// Issued to an OAuth client by the authorization-code grant: its refresh token rotates at
    /// `/oauth2/token`, for that client only.
    OAuth,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Api => "api",
            SessionKind::Browser => "browser",
            SessionKind::OAuth => "oauth",
        }
    }
}

/// What starting a session led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// The user's password changed (or the user was deleted or deactivated) after the login
    /// read it: no session was opened.
    CredentialsChanged,
}

/// The rules of a rotation, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct RotationRules {
    /// How long after its rotation a token may be replayed for its successor.
    pub grace: Duration,
    /// How many such replays one token is answered.
    pub grace_retries: u32,
    /// No session is refreshed once this old.
    pub max_lifetime: Duration,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was live and is now rotated; `successor` was stored. `user` is the token's
    /// user as it is now (with current roles).
    Rotated { user: UserRecord, family_id: Uuid, scope: Option<String>, amr: Vec<String> },
    /// The token was rotated moments ago (within the grace window): the caller gets the same
    /// successor, unsealed with the token it presented.
    Retried { user: UserRecord, family_id: Uuid, scope: Option<String>, amr: Vec<String>, sealed: Vec<u8> },
    /// The token was rotated before the grace window: the family is now revoked.
    ReuseDetected { user_id: Uuid, family_id: Uuid },
    /// Live (or retried within the grace window), but the scope asked for is not within the
    /// session's: nothing was written, and the token can still be refreshed.
    ScopeExceeded,
    /// Unknown, expired or revoked.
    Invalid,
}

/// One live session as listed to its user.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// `api`, `browser` or `oauth`.
    pub kind: String,
    /// The OAuth client an `oauth` session was issued to.
    pub client_id: Option<String>,
    /// How the user signed in (RFC 8176 `amr`).
    pub amr: Vec<String>,
}

/// Opens a session: family, first token and the successful login's history row, all or
/// nothing; and only while the user is active and its password is still the version the login
/// verified (a share lock on the user row keeps it so until the commit).
#[derive(Debug, Clone)]
pub struct Start(pub NewSession);

impl Operation for Start {
    type Output = StartOutcome;

    async fn run(&self, client: &mut Client) -> Result<StartOutcome, Error> {
        start(client, &self.0).await
    }
}

async fn start(client: &mut Client, s: &NewSession) -> Result<StartOutcome, Error> {
    let tx = client.transaction().await?;
    if super::opt(
        &tx,
        "SELECT 1 FROM users WHERE id = $1 AND password_version = $2 AND is_active FOR SHARE",
        &[&s.user_id, &s.password_version],
    )
    .await?
    .is_none()
    {
        return Ok(StartOutcome::CredentialsChanged);
    }
    super::run(
        &tx,
        "INSERT INTO refresh_families (id, user_id, expires_at, ip_address, user_agent, kind, auth_time, amr)
         VALUES ($1, $2, $3, $4, $5, $6, now(), $7)",
        &[&s.family_id, &s.user_id, &s.token.expires_at, &s.ip_address, &s.user_agent, &s.kind.as_str(), &s.amr],
    )
    .await?;
    super::run(
        &tx,
        "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[&s.token.id, &s.token.hash, &s.family_id, &s.user_id, &s.token.expires_at],
    )
    .await?;
    super::history::record_in(&tx, s.user_id, s.ip_address.as_deref(), s.user_agent.as_deref(), true).await?;
    tx.commit().await?;
    Ok(StartOutcome::Started)
}

/// Rotates the token whose secret hashes to `presented`, storing `successor` (whose secret is
/// `sealed` under the presented one); see the module documentation. `ip` is the caller's, for
/// the events a replay records.
#[derive(Debug, Clone)]
pub struct Rotate {
    pub presented: Vec<u8>,
    pub successor: NewToken,
    pub sealed: Vec<u8>,
    pub rules: RotationRules,
    pub ip: Option<String>,
    /// The OAuth client presenting the token: only a session bound to that client rotates
    /// (`None`: only a first-party session of `/api/v1/auth`). Any other is `Invalid`, with no
    /// side effect.
    pub client_id: Option<String>,
    /// The scope the client asks for (RFC 6749 §6): the token rotates only if every one of
    /// these is within the session's scope (`None`: the session's own).
    pub scope: Option<Vec<String>>,
}

impl Operation for Rotate {
    type Output = RotateOutcome;

    async fn run(&self, client: &mut Client) -> Result<RotateOutcome, Error> {
        rotate(client, self).await
    }
}

async fn rotate(client: &mut Client, op: &Rotate) -> Result<RotateOutcome, Error> {
    let Rotate { presented, successor, sealed, rules, ip, client_id, scope: asked } = op;
    let (rules, ip_address) = (*rules, ip.as_deref());
    // One statement, so one round trip and one implicit transaction: mark the presented token
    // rotated (the compare-and-swap), store its successor, touch the session, and return the
    // user with its current roles. The successor and the session expire at the sooner of the
    // refresh TTL and the session's absolute end.
    let max_lifetime = rules.max_lifetime.as_secs_f64();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
        [presented, sealed, &successor.id, &successor.hash, &successor.expires_at, &max_lifetime, client_id, asked];
    match super::opt(
        &*client,
        "WITH cas AS (
                 UPDATE refresh_tokens t SET rotated_at = now(), successor_sealed = $2
                 FROM refresh_families f
                 WHERE t.token_hash = $1 AND f.id = t.family_id
                   AND t.rotated_at IS NULL AND t.revoked_at IS NULL AND f.revoked_at IS NULL
                   AND t.expires_at > now() AND f.created_at + make_interval(secs => $6) > now()
                   AND f.client_id IS NOT DISTINCT FROM $7::text AND f.kind <> 'browser'
                   AND ($8::text[] IS NULL OR string_to_array(coalesce(f.scope, ''), ' ') @> $8::text[])
                 RETURNING t.id, t.family_id, t.user_id, f.scope, COALESCE(f.amr, '{pwd}') AS amr,
                           LEAST($5::timestamptz, f.created_at + make_interval(secs => $6)) AS expires_at
             ), successor AS (
                 INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, user_id, expires_at)
                 SELECT $3, $4, family_id, id, user_id, expires_at FROM cas
             ), touch AS (
                 UPDATE refresh_families SET last_used_at = now(), expires_at = cas.expires_at
                 FROM cas WHERE refresh_families.id = cas.family_id
             )
             SELECT cas.family_id, cas.scope, cas.amr, u.id, u.username, u.email, u.email_verified, u.is_active, u.created_at,
                    ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                          WHERE ur.user_id = u.id ORDER BY r.name) AS roles
             FROM cas JOIN users u ON u.id = cas.user_id",
        &params,
    )
    .await
    {
        Ok(Some(row)) => {
            let (family_id, scope, amr) = (row.get(0), row.get(1), row.get(2));
            return Ok(RotateOutcome::Rotated { user: users::user_from(&row), family_id, scope, amr });
        }
        Ok(None) => {}
        // The user (and so the session) was deleted while this statement ran.
        Err(e) if super::is_foreign_key_violation(&e) => return Ok(RotateOutcome::Invalid),
        Err(e) => return Err(e),
    }

    let tx = client.transaction().await?;
    let Some(row) = super::opt(
        &tx,
        "SELECT t.id, t.family_id, t.user_id, t.rotated_at IS NOT NULL AS rotated,
                    t.rotated_at > now() - make_interval(secs => $2) AS in_grace,
                    t.revoked_at IS NOT NULL OR f.revoked_at IS NOT NULL AS revoked,
                    t.successor_sealed,
                    s.id IS NOT NULL AND s.revoked_at IS NULL AND s.expires_at > now() AS successor_live,
                    f.scope,
                    t.expires_at > now() AND f.created_at + make_interval(secs => $4) > now() AS live,
                    $5::text[] IS NULL OR string_to_array(coalesce(f.scope, ''), ' ') @> $5::text[] AS within,
                    COALESCE(f.amr, '{pwd}') AS amr
             FROM refresh_tokens t
             JOIN refresh_families f ON f.id = t.family_id
             LEFT JOIN refresh_tokens s ON s.parent_id = t.id
             WHERE t.token_hash = $1 AND f.client_id IS NOT DISTINCT FROM $3::text AND f.kind <> 'browser'",
        &[presented, &rules.grace.as_secs_f64(), client_id, &max_lifetime, asked],
    )
    .await?
    else {
        return Ok(RotateOutcome::Invalid);
    };
    let (token_id, family_id, user_id): (Uuid, Uuid, Uuid) = (row.get(0), row.get(1), row.get(2));
    let rotated: bool = row.get(3);
    let in_grace: Option<bool> = row.get(4);
    let revoked: bool = row.get(5);
    let sealed: Option<Vec<u8>> = row.get(6);
    let successor_live: bool = row.get(7);
    let scope: Option<String> = row.get(8);
    let (live, within): (bool, bool) = (row.get(9), row.get(10));
    let amr: Vec<String> = row.get(11);
    if !revoked && !rotated && live && !within {
        // The compare-and-swap left it alone for its scope alone: refused, still refreshable.
        return Ok(RotateOutcome::ScopeExceeded);
    }
    if revoked || !rotated {
        // Revoked, or never rotated but expired: dead either way.
        return Ok(RotateOutcome::Invalid);
    }
    if in_grace == Some(true)
        && successor_live
        && let Some(sealed) = sealed
    {
        if !within {
            // A retry asks for the same scope rules as a rotation: refused, nothing counted.
            return Ok(RotateOutcome::ScopeExceeded);
        }
        // Count the retry; the condition makes concurrent retries unable to exceed the bound.
        let max = i32::try_from(rules.grace_retries).unwrap_or(i32::MAX);
        if let Some(retry) = super::opt(
            &tx,
            "UPDATE refresh_tokens SET grace_retries = grace_retries + 1
                 WHERE id = $1 AND grace_retries < $2 RETURNING grace_retries",
            &[&token_id, &max],
        )
        .await?
        {
            let retry: i32 = retry.get(0);
            let Some(user) = users::get_in(&tx, user_id).await? else { return Ok(RotateOutcome::Invalid) };
            let event = SecurityEvent::RefreshRetried { user: user_id, family: family_id, retry };
            events::record_in(&tx, &event, ip_address).await?;
            tx.commit().await?;
            return Ok(RotateOutcome::Retried { user, family_id, scope, amr, sealed });
        }
    }
    revoke_family_in(&tx, family_id, "reuse_detected").await?;
    let event = SecurityEvent::RefreshReuseDetected { user: user_id, family: family_id };
    events::record_in(&tx, &event, ip_address).await?;
    tx.commit().await?;
    Ok(RotateOutcome::ReuseDetected { user_id, family_id })
}

/// Revokes a session. Only the family row is written: every rotation and look-up checks the
/// family's revocation, and leaving its tokens' rows alone keeps revocation from ever waiting
/// on a token a concurrent rotation holds (which waits on the family: a deadlock).
async fn revoke_family_in(client: &impl GenericClient, family_id: Uuid, reason: &str) -> Result<(), Error> {
    super::run(
        client,
        "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
        &[&family_id, &reason],
    )
    .await?;
    Ok(())
}

/// What revoking a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The session is revoked (it may have been already).
    Revoked { family_id: Uuid, user_id: Uuid },
    /// No such token.
    Unknown,
    /// The token belongs to a session of another client (or of none): nothing was revoked.
    NotYours,
}

/// Revokes the family of the token whose secret hashes to `presented` (logout, RFC 7009). With
/// `client`, only a session bound to that client (`Some(None)`: only a first-party one; `None`:
/// any, for the token's holder).
#[derive(Debug, Clone)]
pub struct RevokeByToken {
    pub presented: Vec<u8>,
    pub client: Option<Option<String>>,
}

impl Operation for RevokeByToken {
    type Output = RevokeOutcome;

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let tx = client.transaction().await?;
        let sql = "SELECT t.family_id, t.user_id, f.client_id FROM refresh_tokens t
                   JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1";
        let Some(row) = super::opt(&tx, sql, &[&self.presented]).await? else { return Ok(RevokeOutcome::Unknown) };
        let (family_id, user_id, owner): (Uuid, Uuid, Option<String>) = (row.get(0), row.get(1), row.get(2));
        if self.client.as_ref().is_some_and(|c| *c != owner) {
            return Ok(RevokeOutcome::NotYours);
        }
        revoke_family_in(&tx, family_id, "logout").await?;
        tx.commit().await?;
        Ok(RevokeOutcome::Revoked { family_id, user_id })
    }
}

/// Revokes one session of `user_id`; false when it is not that user's live session.
#[derive(Debug, Clone, Copy)]
pub struct RevokeOne {
    pub user_id: Uuid,
    pub family_id: Uuid,
}

impl Operation for RevokeOne {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let tx = client.transaction().await?;
        if super::opt(
            &tx,
            "SELECT 1 FROM refresh_families WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            &[&self.family_id, &self.user_id],
        )
        .await?
        .is_none()
        {
            return Ok(false);
        }
        revoke_family_in(&tx, self.family_id, "session_revoked").await?;
        tx.commit().await?;
        Ok(true)
    }
}

pub(crate) async fn revoke_all_in(
    client: &impl GenericClient,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<Vec<Uuid>, Error> {
    // As in `revoke_family_in`, the families only.
    Ok(super::all(
        client,
        "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $3
             WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2)
             RETURNING id",
        &[&user_id, &keep, &reason],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Revokes every session of a user (logout-all); returns the sessions that were live, so that
/// the caller can fence off their access tokens, including any minted by a refresh that
/// committed just before this did.
#[derive(Debug, Clone, Copy)]
pub struct RevokeAll {
    pub user_id: Uuid,
}

impl Operation for RevokeAll {
    type Output = Vec<Uuid>;

    async fn run(&self, client: &mut Client) -> Result<Vec<Uuid>, Error> {
        let tx = client.transaction().await?;
        let revoked = revoke_all_in(&tx, self.user_id, None, "logout_all").await?;
        let event = SecurityEvent::LogoutAll { user: self.user_id, sessions: revoked.len() };
        events::record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(revoked)
    }
}

/// A live browser session, by the digest of its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub family_id: Uuid,
    pub user: UserRecord,
    /// When the user signed in (OIDC `auth_time`, `max_age`).
    pub auth_time: OffsetDateTime,
    /// How the user signed in (RFC 8176 `amr`).
    pub amr: Vec<String>,
}

/// The browser session whose cookie hashes to `token_hash`, if it is live and its user active.
#[derive(Debug, Clone)]
pub struct FindBrowserSession {
    pub token_hash: Vec<u8>,
}

impl Operation for FindBrowserSession {
    type Output = Option<BrowserSession>;

    async fn run(&self, client: &mut Client) -> Result<Option<BrowserSession>, Error> {
        let sql = "SELECT f.id, f.user_id, COALESCE(f.auth_time, f.created_at), COALESCE(f.amr, '{pwd}')
                   FROM refresh_tokens t
                   JOIN refresh_families f ON f.id = t.family_id
                   WHERE t.token_hash = $1 AND f.kind = 'browser' AND f.revoked_at IS NULL AND t.revoked_at IS NULL
                     AND f.expires_at > now() AND t.expires_at > now()";
        let Some(row) = super::opt(&*client, sql, &[&self.token_hash]).await? else { return Ok(None) };
        let (family_id, user_id, auth_time): (Uuid, Uuid, OffsetDateTime) = (row.get(0), row.get(1), row.get(2));
        let amr: Vec<String> = row.get(3);
        let user = users::get_in(&*client, user_id).await?.filter(|u| u.is_active);
        Ok(user.map(|user| BrowserSession { family_id, user, auth_time, amr }))
    }
}

/// The live sessions of a user, most recently used first.
#[derive(Debug, Clone, Copy)]
pub struct List {
    pub user_id: Uuid,
}

impl Operation for List {
    type Output = Vec<SessionRow>;

    async fn run(&self, client: &mut Client) -> Result<Vec<SessionRow>, Error> {
        let sql = "SELECT id, created_at, last_used_at, ip_address, user_agent, kind, client_id,
                          COALESCE(amr, '{pwd}') FROM refresh_families
                   WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
                   ORDER BY last_used_at DESC LIMIT 1000";
        Ok(super::all(&*client, sql, &[&self.user_id])
            .await?
            .iter()
            .map(|r| SessionRow {
                id: r.get(0),
                created_at: r.get(1),
                last_used_at: r.get(2),
                ip_address: r.get(3),
                user_agent: r.get(4),
                kind: r.get(5),
                client_id: r.get(6),
                amr: r.get(7),
            })
            .collect())
    }
}
