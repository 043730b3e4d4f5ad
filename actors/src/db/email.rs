//! The account's address: the verification mailed at signup (and on request), and the change of
//! address, which applies only once the new address confirms it. Every operation that sends a
//! mail issues its token and enqueues the mail in the transaction of its change (see
//! [`super::account_tokens`] and [`super::outbox`]); every operation that spends a token applies
//! its effect in the same transaction, so a token is used exactly when its effect committed.
//!
//! A verification or a change of address changes what every check reads about the user (its
//! standing carries the address and whether it is verified), so those operations replace the
//! authorization epoch and every instance sees the new state at once.

use std::time::Duration;

use deadpool_postgres::{Client, GenericClient};
use tokio_postgres::Error;
use uuid::Uuid;

use super::Operation;
use super::account_tokens::{self, Purpose, Refused};
use super::events::{self, SecurityEvent};
use super::outbox::{self, OutgoingMail};
use super::users::{self, UserRecord};

/// A token to store (its digest only) and the mail that carries it.
#[derive(Debug, Clone)]
pub struct TokenMail {
    pub digest: Vec<u8>,
    pub ttl: Duration,
    pub mail: OutgoingMail,
}

/// Signup: the user, its verification token and the mail that carries it, in one transaction,
/// so that no account exists without its mail and no mail without its account.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub user: users::Create,
    pub verification: TokenMail,
}

impl Operation for SignUp {
    type Output = UserRecord;

    async fn run(&self, client: &mut Client) -> Result<UserRecord, Error> {
        let tx = client.transaction().await?;
        let user = users::create_in(&tx, &self.user).await?;
        let v = &self.verification;
        account_tokens::issue_in(&tx, Purpose::VerifyEmail, user.id, &user.email, &v.digest, v.ttl).await?;
        outbox::enqueue(&tx, &v.mail).await?;
        tx.commit().await?;
        Ok(user)
    }
}

/// What asking for a new verification mail led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendOutcome {
    /// A new token was issued (voiding the older ones) and its mail enqueued.
    Sent,
    /// The address is already verified: nothing was sent.
    AlreadyVerified,
    /// The account's address is no longer the one the mail was written for: nothing was sent.
    AddressChanged,
    Gone,
}

/// A new verification mail for `user_id`, written for `email` (the address the caller read):
/// sent only if that is still the account's address and it is not verified yet.
#[derive(Debug, Clone)]
pub struct ResendVerification {
    pub user_id: Uuid,
    pub email: String,
    pub verification: TokenMail,
}

impl Operation for ResendVerification {
    type Output = ResendOutcome;

    async fn run(&self, client: &mut Client) -> Result<ResendOutcome, Error> {
        let tx = client.transaction().await?;
        let row = super::opt(&tx, "SELECT email, email_verified FROM users WHERE id = $1 FOR UPDATE", &[&self.user_id])
            .await?;
        let Some(row) = row else { return Ok(ResendOutcome::Gone) };
        if row.get::<_, bool>("email_verified") {
            return Ok(ResendOutcome::AlreadyVerified);
        }
        if row.get::<_, String>("email") != self.email {
            return Ok(ResendOutcome::AddressChanged);
        }
        let v = &self.verification;
        account_tokens::issue_in(&tx, Purpose::VerifyEmail, self.user_id, &self.email, &v.digest, v.ttl).await?;
        outbox::enqueue(&tx, &v.mail).await?;
        tx.commit().await?;
        Ok(ResendOutcome::Sent)
    }
}

/// What presenting a token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendOutcome {
    /// The token was spent and its effect applied: the user as it now is.
    Applied(UserRecord),
    /// The token was not accepted (nothing changed).
    Refused(Refused),
    /// The token was good, but the account's address is no longer the one it was issued for
    /// (verification) or has moved since the caller read it (change): nothing changed, and the
    /// token stays unspent.
    Stale,
}

/// Spends a verification token and marks the address verified, if the token's address is
/// still the account's address.
#[derive(Debug, Clone)]
pub struct Verify {
    pub digest: Vec<u8>,
}

impl Operation for Verify {
    type Output = SpendOutcome;

    fn changes_standing(output: &SpendOutcome) -> bool {
        matches!(output, SpendOutcome::Applied(_))
    }

    async fn run(&self, client: &mut Client) -> Result<SpendOutcome, Error> {
        let tx = client.transaction().await?;
        let spent = match account_tokens::consume_in(&tx, Purpose::VerifyEmail, &self.digest).await? {
            Ok(spent) => spent,
            Err(refused) => return Ok(SpendOutcome::Refused(refused)),
        };
        let updated = super::run(
            &tx,
            "UPDATE users SET email_verified = true, updated_at = now() WHERE id = $1 AND email = $2",
            &[&spent.user_id, &spent.email],
        )
        .await?;
        if updated == 0 {
            // Dropping the transaction rolls the spend back.
            return Ok(SpendOutcome::Stale);
        }
        events::record_in(&tx, &SecurityEvent::EmailVerified { user: spent.user_id }, None).await?;
        let Some(user) = users::get_in(&tx, spent.user_id).await? else { return Ok(SpendOutcome::Stale) };
        tx.commit().await?;
        Ok(SpendOutcome::Applied(user))
    }
}

/// What asking for an email change led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRequestOutcome {
    /// The confirmation (to the new address) and the notice (to the old one) are enqueued.
    Requested,
    /// The password or the address changed after the caller checked them: nothing was sent.
    Changed,
    Gone,
}

/// An email change request: voids older change tokens, issues one bound to `new_email`, and
/// enqueues its confirmation to the new address and a notice (no token) to the old one. It
/// applies only while the password is still the version the caller's password matched and
/// the address is still `old_email` (both mails were written for them).
#[derive(Debug, Clone)]
pub struct RequestChange {
    pub user_id: Uuid,
    pub verified_version: i32,
    pub old_email: String,
    pub new_email: String,
    pub confirmation: TokenMail,
    pub notice: OutgoingMail,
    pub ip: Option<String>,
}

impl Operation for RequestChange {
    type Output = ChangeRequestOutcome;

    async fn run(&self, client: &mut Client) -> Result<ChangeRequestOutcome, Error> {
        let tx = client.transaction().await?;
        let row =
            super::opt(&tx, "SELECT email, password_version FROM users WHERE id = $1 FOR UPDATE", &[&self.user_id])
                .await?;
        let Some(row) = row else { return Ok(ChangeRequestOutcome::Gone) };
        if row.get::<_, String>("email") != self.old_email
            || row.get::<_, i32>("password_version") != self.verified_version
        {
            return Ok(ChangeRequestOutcome::Changed);
        }
        let c = &self.confirmation;
        account_tokens::issue_in(&tx, Purpose::EmailChange, self.user_id, &self.new_email, &c.digest, c.ttl).await?;
        outbox::enqueue(&tx, &c.mail).await?;
        outbox::enqueue(&tx, &self.notice).await?;
        let event = SecurityEvent::EmailChangeRequested { user: self.user_id, new: self.new_email.clone() };
        events::record_in(&tx, &event, self.ip.as_deref()).await?;
        tx.commit().await?;
        Ok(ChangeRequestOutcome::Requested)
    }
}

/// A pending email change, as its token names it (read without spending it, so that the flow
/// can write the notice to the old address before the change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub user_id: Uuid,
    pub old_email: String,
    pub new_email: String,
}

/// The live email-change token with `digest`, if any, and the account's current address.
#[derive(Debug, Clone)]
pub struct PendingChange {
    pub digest: Vec<u8>,
}

impl Operation for PendingChange {
    type Output = Option<Pending>;

    async fn run(&self, client: &mut Client) -> Result<Option<Pending>, Error> {
        let row = super::opt(
            &*client,
            "SELECT t.user_id, u.email AS old_email, t.email AS new_email
             FROM account_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.digest = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > now()",
            &[&self.digest, &Purpose::EmailChange.as_str()],
        )
        .await?;
        Ok(row.map(|r| Pending {
            user_id: r.get("user_id"),
            old_email: r.get("old_email"),
            new_email: r.get("new_email"),
        }))
    }
}

/// Spends an email-change token and moves the account to the token's address, verified, if the
/// account's address is still `old_email` (the notice to it was written for it); records the
/// change and enqueues `notice` to the old address. A new address another account took
/// meanwhile makes the unique index refuse the update: the whole transaction rolls back (the
/// token stays unspent) and the caller gets the conflict.
#[derive(Debug, Clone)]
pub struct ConfirmChange {
    pub digest: Vec<u8>,
    pub old_email: String,
    pub notice: OutgoingMail,
}

impl Operation for ConfirmChange {
    type Output = SpendOutcome;

    fn changes_standing(output: &SpendOutcome) -> bool {
        matches!(output, SpendOutcome::Applied(_))
    }

    async fn run(&self, client: &mut Client) -> Result<SpendOutcome, Error> {
        let tx = client.transaction().await?;
        let spent = match account_tokens::consume_in(&tx, Purpose::EmailChange, &self.digest).await? {
            Ok(spent) => spent,
            Err(refused) => return Ok(SpendOutcome::Refused(refused)),
        };
        let updated = super::run(
            &tx,
            "UPDATE users SET email = $3, email_verified = true, updated_at = now() WHERE id = $1 AND email = $2",
            &[&spent.user_id, &self.old_email, &spent.email],
        )
        .await?;
        if updated == 0 {
            return Ok(SpendOutcome::Stale);
        }
        // Verification links still on their way to the old address are worthless now (the
        // verification checks the address too); drop them.
        super::run(
            &tx,
            "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
            &[&spent.user_id, &Purpose::VerifyEmail.as_str()],
        )
        .await?;
        outbox::enqueue(&tx, &self.notice).await?;
        let event =
            SecurityEvent::EmailChanged { user: spent.user_id, old: self.old_email.clone(), new: spent.email.clone() };
        events::record_in(&tx, &event, None).await?;
        let Some(user) = users::get_in(&tx, spent.user_id).await? else { return Ok(SpendOutcome::Stale) };
        tx.commit().await?;
        Ok(SpendOutcome::Applied(user))
    }
}
