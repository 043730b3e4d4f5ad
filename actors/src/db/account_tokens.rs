//! Tokens that mails carry (verify an address, reset a password, confirm a new address): only
//! their SHA-256 digest is stored, each is single use, bound to one account and to the address
//! it was sent to, and a newer token of the same purpose voids the account's older ones.
//!
//! A flow issues a token with [`issue_in`] and its mail with [`super::outbox::enqueue`] in the
//! same transaction; it spends one with [`consume_in`] in the transaction that applies its
//! effect, so a token is used exactly when its effect committed.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Error;
use uuid::Uuid;

/// What a token is for. A token of one purpose is never accepted for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
    EmailChange,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
            Purpose::EmailChange => "email_change",
        }
    }
}

/// A token that was just spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    pub user_id: Uuid,
    /// The address the token was sent to.
    pub email: String,
}

/// Why a token was not accepted. Callers answer all of them alike (no hint to the presenter
/// which one it was); the distinction is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No such token for this purpose (never issued, tampered with, voided by a newer one).
    Unknown,
    Expired,
    Used,
}

/// Voids the account's unused tokens of `purpose` and stores a new one, alive `ttl`. Run it in
/// the transaction that also enqueues the mail carrying the token.
pub async fn issue_in(
    client: &impl GenericClient,
    purpose: Purpose,
    user_id: Uuid,
    email: &str,
    digest: &[u8],
    ttl: Duration,
) -> Result<OffsetDateTime, Error> {
    super::run(
        client,
        "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        &[&user_id, &purpose.as_str()],
    )
    .await?;
    let seconds = ttl.as_secs_f64();
    let row = super::one(
        client,
        "INSERT INTO account_tokens (digest, purpose, user_id, email, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at",
        &[&digest, &purpose.as_str(), &user_id, &email, &seconds],
    )
    .await?;
    Ok(row.get(0))
}

/// Spends the token whose digest is `digest`, if it is of `purpose`, unused and alive: marks it
/// used (under a row lock, so of two concurrent spends one wins) and returns whom it was for.
/// Run it in the transaction that applies the token's effect; if that rolls back, the token is
/// unspent again.
pub async fn consume_in(
    client: &impl GenericClient,
    purpose: Purpose,
    digest: &[u8],
) -> Result<Result<Spent, Refused>, Error> {
    let row = super::opt(
        client,
        "SELECT user_id, email, used_at IS NOT NULL AS used, expires_at <= now() AS expired
         FROM account_tokens WHERE digest = $1 AND purpose = $2 FOR UPDATE",
        &[&digest, &purpose.as_str()],
    )
    .await?;
    let Some(row) = row else { return Ok(Err(Refused::Unknown)) };
    if row.get::<_, bool>("used") {
        return Ok(Err(Refused::Used));
    }
    if row.get::<_, bool>("expired") {
        return Ok(Err(Refused::Expired));
    }
    super::run(client, "UPDATE account_tokens SET used_at = now() WHERE digest = $1", &[&digest]).await?;
    Ok(Ok(Spent { user_id: row.get("user_id"), email: row.get("email") }))
}

/// Whether a token of `purpose` with `digest` exists, unused and alive (a page shows its form
/// only then; a GET never spends a token).
pub async fn is_live_in(client: &impl GenericClient, purpose: Purpose, digest: &[u8]) -> Result<bool, Error> {
    let row = super::opt(
        client,
        "SELECT 1 FROM account_tokens WHERE digest = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()",
        &[&digest, &purpose.as_str()],
    )
    .await?;
    Ok(row.is_some())
}

/// Whether the token is live (an [`super::Operation`] around [`is_live_in`]).
#[derive(Debug, Clone)]
pub struct IsLive {
    pub purpose: Purpose,
    pub digest: Vec<u8>,
}

impl super::Operation for IsLive {
    type Output = bool;

    async fn run(&self, client: &mut deadpool_postgres::Client) -> Result<bool, Error> {
        is_live_in(&*client, self.purpose, &self.digest).await
    }
}
