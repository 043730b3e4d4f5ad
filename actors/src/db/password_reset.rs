//! Password reset: find the account a reset link may go to, store the link's token with its
//! mail, and apply a reset in one transaction (spend the token, replace the password, end
//! every session, record the event, enqueue the notice).
//!
//! A token only ever works for the account it was issued to, while that account is active and
//! its address is still the one the link was mailed to: a reset proves control of that mailbox,
//! and of no other.

use std::time::Duration;

use deadpool_postgres::Client;
use tokio_postgres::Error;
use uuid::Uuid;

use super::Operation;
use super::account_tokens::{self, Purpose, Refused};
use super::events::{self, SecurityEvent};
use super::outbox::{self, OutgoingMail};

/// An active account a reset link may be mailed to, or a reset applied for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user_id: Uuid,
    pub username: String,
    /// The account's current address (where its mail goes).
    pub email: String,
}

fn target_from(row: &tokio_postgres::Row) -> Target {
    Target { user_id: row.get("id"), username: row.get("username"), email: row.get("email") }
}

/// The active account whose address is `email` (case-insensitively, as addresses are unique).
#[derive(Debug, Clone)]
pub struct FindByEmail {
    pub email: String,
}

impl Operation for FindByEmail {
    type Output = Option<Target>;

    async fn run(&self, client: &mut Client) -> Result<Option<Target>, Error> {
        let sql = "SELECT id, username, email FROM users WHERE lower(email) = lower($1) AND is_active";
        Ok(super::opt(&*client, sql, &[&self.email]).await?.as_ref().map(target_from))
    }
}

/// Stores a reset token for `user_id` (voiding its older ones) and enqueues the mail that
/// carries it, in one transaction; only if the account is still active and its address is still
/// `email` (a change between the look-up and now sends nothing). Returns whether it did.
#[derive(Debug, Clone)]
pub struct Issue {
    pub user_id: Uuid,
    pub email: String,
    pub digest: Vec<u8>,
    pub ttl: Duration,
    pub mail: OutgoingMail,
}

impl Operation for Issue {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let tx = client.transaction().await?;
        let still = super::opt(
            &tx,
            "SELECT 1 FROM users WHERE id = $1 AND is_active AND lower(email) = lower($2) FOR SHARE",
            &[&self.user_id, &self.email],
        )
        .await?;
        if still.is_none() {
            return Ok(false);
        }
        account_tokens::issue_in(&tx, Purpose::PasswordReset, self.user_id, &self.email, &self.digest, self.ttl)
            .await?;
        outbox::enqueue(&tx, &self.mail).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The account a live (unused, unexpired) reset token is for, if that account is active and
/// still has the address the token was mailed to. It spends nothing: the reset page's GET and
/// the check before hashing a new password use it.
#[derive(Debug, Clone)]
pub struct Holder {
    pub digest: Vec<u8>,
}

impl Operation for Holder {
    type Output = Option<Target>;

    async fn run(&self, client: &mut Client) -> Result<Option<Target>, Error> {
        let sql = "SELECT u.id, u.username, u.email FROM account_tokens t JOIN users u ON u.id = t.user_id
                   WHERE t.digest = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > now()
                     AND u.is_active AND lower(u.email) = lower(t.email)";
        let purpose = Purpose::PasswordReset.as_str();
        Ok(super::opt(&*client, sql, &[&self.digest, &purpose]).await?.as_ref().map(target_from))
    }
}

/// Why a reset was refused. The caller answers every one alike; the reason is for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Token(Refused),
    /// The account was disabled (or deleted) after the link was sent.
    Inactive,
    /// The account's address changed after the link was sent to the old one.
    AddressChanged,
}

impl Refusal {
    /// A label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Token(Refused::Unknown) => "unknown_token",
            Refusal::Token(Refused::Expired) => "expired_token",
            Refusal::Token(Refused::Used) => "used_token",
            Refusal::Inactive => "inactive_account",
            Refusal::AddressChanged => "address_changed",
        }
    }
}

/// What a reset led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    /// The password was replaced: the account, and the sessions the reset ended (so that the
    /// caller can fence off their access tokens).
    Reset { user_id: Uuid, revoked: Vec<Uuid> },
    /// Nothing changed; the token is as it was.
    Refused(Refusal),
}

/// Applies a reset in one transaction: spends the token (under its row lock, so of two
/// concurrent resets with one token exactly one commits), replaces the password hash and
/// raises `password_version` (so that a login that read the old password cannot start a
/// session afterwards), revokes every session of the account, records a `password_reset`
/// event and enqueues the notice mail. A refusal rolls back, leaving the token unspent.
#[derive(Debug, Clone)]
pub struct Reset {
    pub digest: Vec<u8>,
    pub password_hash: String,
    pub notice: OutgoingMail,
    pub ip: Option<String>,
}

impl Operation for Reset {
    type Output = ResetOutcome;

    async fn run(&self, client: &mut Client) -> Result<ResetOutcome, Error> {
        let tx = client.transaction().await?;
        let spent = match account_tokens::consume_in(&tx, Purpose::PasswordReset, &self.digest).await? {
            Ok(spent) => spent,
            Err(refused) => return Ok(ResetOutcome::Refused(Refusal::Token(refused))),
        };
        let user_id = spent.user_id;
        let row = super::opt(
            &tx,
            "SELECT is_active, lower(email) = lower($2) AS same_address FROM users WHERE id = $1 FOR UPDATE",
            &[&user_id, &spent.email],
        )
        .await?;
        let Some(row) = row.filter(|r| r.get::<_, bool>("is_active")) else {
            return Ok(ResetOutcome::Refused(Refusal::Inactive));
        };
        if !row.get::<_, bool>("same_address") {
            return Ok(ResetOutcome::Refused(Refusal::AddressChanged));
        }
        super::run(
            &tx,
            "UPDATE users SET password_hash = $2, password_version = password_version + 1, updated_at = now()
                 WHERE id = $1",
            &[&user_id, &self.password_hash],
        )
        .await?;
        let revoked = super::sessions::revoke_all_in(&tx, user_id, None, "password_reset").await?;
        events::record_in(&tx, &SecurityEvent::PasswordReset { user: user_id }, self.ip.as_deref()).await?;
        outbox::enqueue(&tx, &self.notice).await?;
        tx.commit().await?;
        Ok(ResetOutcome::Reset { user_id, revoked })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_label() {
        let all = [
            Refusal::Token(Refused::Unknown),
            Refusal::Token(Refused::Expired),
            Refusal::Token(Refused::Used),
            Refusal::Inactive,
            Refusal::AddressChanged,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
