//! Second factors: which ones an account has, and the pending second step of a login.
//!
//! A login whose password was right, for an account with a second factor, does not open a
//! session: it stores a **pending step** ([`IssuePending`]) under the SHA-256 of a random
//! `mfa_token` and hands the token to the client. Each factor check first spends an attempt
//! ([`SpendAttempt`], one atomic `UPDATE`, so parallel guesses cannot get more than
//! `max_attempts` checks), and a successful check completes the step ([`Complete`], which
//! succeeds for exactly one caller). A step that is used, expired or out of attempts is gone.
//!
//! The factors themselves (TOTP, recovery codes, passkeys) have their own modules'
//! operations; this one only tells which exist ([`Factors`]).

use std::time::Duration;

use deadpool_postgres::Client;
use time::OffsetDateTime;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use super::Operation;
use super::users::{USER_COLUMNS, UserRecord};

/// The second factors an account has set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors {
    /// A confirmed TOTP authenticator (its recovery codes come with it).
    pub totp: bool,
    /// At least one passkey.
    pub webauthn: bool,
}

impl Factors {
    pub fn any(self) -> bool {
        self.totp || self.webauthn
    }
}

/// Columns that fill a [`Factors`] for the user `u` of a query (two primary-key lookups).
pub(crate) const FACTOR_COLUMNS: &str =
    "EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS has_totp,
     EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = u.id) AS has_webauthn";

pub(crate) fn factors_from(row: &Row) -> Factors {
    Factors { totp: row.get("has_totp"), webauthn: row.get("has_webauthn") }
}

/// The factors of one user.
#[derive(Debug, Clone, Copy)]
pub struct GetFactors {
    pub user_id: Uuid,
}

impl Operation for GetFactors {
    type Output = Factors;

    async fn run(&self, client: &mut Client) -> Result<Factors, Error> {
        let row =
            super::one(&*client, &format!("SELECT {FACTOR_COLUMNS} FROM (SELECT $1::uuid AS id) u"), &[&self.user_id])
                .await?;
        Ok(factors_from(&row))
    }
}

/// Stores a pending second step for `user_id`, alive `ttl`, allowing `max_attempts` checks.
#[derive(Debug, Clone)]
pub struct IssuePending {
    pub digest: Vec<u8>,
    pub user_id: Uuid,
    pub password_version: i32,
    /// `api` or `browser`: the session the step will open.
    pub session_kind: &'static str,
    pub max_attempts: i32,
    pub ttl: Duration,
}

impl Operation for IssuePending {
    type Output = OffsetDateTime;

    async fn run(&self, client: &mut Client) -> Result<OffsetDateTime, Error> {
        // Expired steps are swept by whoever issues the next one (an index scan, bounded).
        super::run(
            &*client,
            "DELETE FROM mfa_pending WHERE digest IN
               (SELECT digest FROM mfa_pending WHERE expires_at < now() - interval '1 hour' LIMIT 100)",
            &[],
        )
        .await?;
        let row = super::one(
            &*client,
            "INSERT INTO mfa_pending (digest, user_id, password_version, session_kind, max_attempts, expires_at)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING expires_at",
            &[
                &self.digest,
                &self.user_id,
                &self.password_version,
                &self.session_kind,
                &self.max_attempts,
                &self.ttl.as_secs_f64(),
            ],
        )
        .await?;
        Ok(row.get(0))
    }
}

/// A pending step an attempt was just spent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub user_id: Uuid,
    pub password_version: i32,
    /// `api` or `browser`.
    pub session_kind: String,
    /// Attempts spent, this one included.
    pub attempts: i32,
    pub max_attempts: i32,
}

/// A [`Pending`] from a row of `user_id, password_version, session_kind, attempts, max_attempts`.
fn pending_from(r: &Row) -> Pending {
    Pending {
        user_id: r.get(0),
        password_version: r.get(1),
        session_kind: r.get(2),
        attempts: r.get(3),
        max_attempts: r.get(4),
    }
}

/// Spends one attempt of the pending step `digest`, if it is unused, alive and has attempts
/// left (one atomic `UPDATE`): `None` otherwise.
#[derive(Debug, Clone)]
pub struct SpendAttempt {
    pub digest: Vec<u8>,
}

impl Operation for SpendAttempt {
    type Output = Option<Pending>;

    async fn run(&self, client: &mut Client) -> Result<Option<Pending>, Error> {
        let row = super::opt(
            &*client,
            "UPDATE mfa_pending SET attempts = attempts + 1
             WHERE digest = $1 AND used_at IS NULL AND expires_at > now() AND attempts < max_attempts
             RETURNING user_id, password_version, session_kind, attempts, max_attempts",
            &[&self.digest],
        )
        .await?;
        Ok(row.as_ref().map(pending_from))
    }
}

/// Looks at a pending step without spending an attempt (a page that asks for the factor
/// shows its form only for a live step).
#[derive(Debug, Clone)]
pub struct PeekPending {
    pub digest: Vec<u8>,
}

impl Operation for PeekPending {
    type Output = Option<Pending>;

    async fn run(&self, client: &mut Client) -> Result<Option<Pending>, Error> {
        let row = super::opt(
            &*client,
            "SELECT user_id, password_version, session_kind, attempts, max_attempts FROM mfa_pending
             WHERE digest = $1 AND used_at IS NULL AND expires_at > now() AND attempts < max_attempts",
            &[&self.digest],
        )
        .await?;
        Ok(row.as_ref().map(pending_from))
    }
}

/// Marks the pending step used and returns its user as it is now (current roles, whether
/// active) with its factors, in one statement: `Some` for exactly one caller (a second success
/// with the same token, even in parallel, gets `None`).
#[derive(Debug, Clone)]
pub struct Complete {
    pub digest: Vec<u8>,
}

impl Operation for Complete {
    type Output = Option<(UserRecord, Factors)>;

    async fn run(&self, client: &mut Client) -> Result<Option<(UserRecord, Factors)>, Error> {
        let sql = format!(
            "WITH c AS (
                 UPDATE mfa_pending SET used_at = now()
                 WHERE digest = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id
             )
             SELECT {USER_COLUMNS}, {FACTOR_COLUMNS} FROM c JOIN users u ON u.id = c.user_id"
        );
        let row = super::opt(&*client, &sql, &[&self.digest]).await?;
        Ok(row.map(|r| (super::users::user_from(&r), factors_from(&r))))
    }
}
