//! The account's address: verification (mailed at signup, again on request) and change (applies
//! when the new address confirms it). Each flow renders its mails here, before its operation
//! (`auth_actors::db::email`), which stores the token's digest and enqueues the mails in the
//! transaction of the change.
//!
//! - Tokens are [`Secret`]s (256 random bits, only their SHA-256 stored), single use, of one
//!   purpose, bound to one account and to the address they were mailed to; a newer one of the
//!   same purpose voids the account's older ones. Every reason a token is refused (unknown,
//!   tampered with, of another purpose, expired, used, or its address is no longer the
//!   account's) gets the same answer: [`FlowError::InvalidAccountToken`].
//! - A verification applies only if the token's address is still the account's address. An
//!   email change is checked against the account's password like a password change (the login
//!   lockout and per-account limit, each failure recorded), and lands verified: the confirmation
//!   went to the new address. The old address gets a notice when the change is asked for and
//!   again when it applied.
//! - Whether the new address belongs to another account is not checked when the change is asked
//!   for: the answer is always 202 and the confirmation is mailed to the new address. Only
//!   confirming it can meet the conflict (409, nothing changed), and the confirmer holds the
//!   new address's mailbox, so the requester learns nothing a signup would not tell.

use std::time::Duration;

use askama::Template;
use auth_actors::db::account_tokens::Purpose;
use auth_actors::db::email::{self as ops, ChangeRequestOutcome, ResendOutcome, SpendOutcome, TokenMail};
use auth_actors::db::outbox::OutgoingMail;
use auth_actors::db::users::{self, UserRecord};
use auth_actors::keyspace::{Account, LimitClass, Subject};
use auth_actors::redis::rate;
use serde::Deserialize;
use uuid::Uuid;

use super::authenticate::Principal;
use super::error::FlowError;
use crate::app::App;
use crate::domain::{Email, FieldError, Peer};
use crate::mail::{self, SERVICE_NAME};
use crate::secret::Secret;

/// Where the verification link leads (a page whose GET shows a button, whose POST spends it).
pub const VERIFY_PAGE: &str = "/account/verify-email";
/// Where the email-change confirmation link leads.
pub const CONFIRM_CHANGE_PAGE: &str = "/account/confirm-email-change";

/// A mailed token presented back: `{token}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    pub token: String,
}

/// `{new_email, password}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeInput {
    pub new_email: String,
    pub password: String,
}

/// A lifetime in a reader's words ("24 hours", "30 minutes").
fn in_words(ttl: Duration) -> String {
    let secs = ttl.as_secs();
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    if secs >= 3600 && secs.is_multiple_of(3600) {
        plural(secs / 3600, "hour")
    } else {
        plural(secs.div_ceil(60).max(1), "minute")
    }
}

/// The text and HTML bodies of a mail that carries a link.
#[derive(Template)]
#[template(path = "mail/verify_email.txt")]
struct VerifyText<'a> {
    username: &'a str,
    recipient: &'a str,
    link: &'a str,
    ttl: &'a str,
    service: &'a str,
}

#[derive(Template)]
#[template(path = "mail/verify_email.html")]
struct VerifyHtml<'a> {
    subject: &'a str,
    username: &'a str,
    recipient: &'a str,
    link: &'a str,
    ttl: &'a str,
    service: &'a str,
}

#[derive(Template)]
#[template(path = "mail/email_change.txt")]
struct ChangeText<'a> {
    username: &'a str,
    recipient: &'a str,
    link: &'a str,
    ttl: &'a str,
    service: &'a str,
}

#[derive(Template)]
#[template(path = "mail/email_change.html")]
struct ChangeHtml<'a> {
    subject: &'a str,
    username: &'a str,
    recipient: &'a str,
    link: &'a str,
    ttl: &'a str,
    service: &'a str,
}

/// A notice to the old address (no link): `changed` says whether the change was asked for or
/// has applied.
#[derive(Template)]
#[template(path = "mail/email_notice.txt")]
struct NoticeText<'a> {
    username: &'a str,
    new_email: &'a str,
    changed: bool,
    service: &'a str,
}

#[derive(Template)]
#[template(path = "mail/email_notice.html")]
struct NoticeHtml<'a> {
    subject: &'a str,
    username: &'a str,
    recipient: &'a str,
    new_email: &'a str,
    changed: bool,
    service: &'a str,
}

/// A new token and the verification mail that carries it, to `email`.
fn verification(app: &App, username: &str, email: &str) -> Result<TokenMail, FlowError> {
    let secret = Secret::generate()?;
    let ttl = app.config.accounts.verification_ttl;
    let link = mail::link(&app.config.tokens.public_url, VERIFY_PAGE, &[("token", &secret.encode())]);
    let words = in_words(ttl);
    let subject = "Verify your email address";
    let text = VerifyText { username, recipient: email, link: &link, ttl: &words, service: SERVICE_NAME };
    let html = VerifyHtml { subject, username, recipient: email, link: &link, ttl: &words, service: SERVICE_NAME };
    let mail = mail::compose("verify_email", email, subject, &text, &html)?;
    Ok(TokenMail { digest: secret.digest(), ttl, mail })
}

/// A notice to the account's old address about a change to `new_email`.
fn notice(
    kind: &'static str,
    username: &str,
    old: &str,
    new_email: &str,
    changed: bool,
) -> Result<OutgoingMail, FlowError> {
    let subject =
        if changed { "Your email address was changed" } else { "A change of your email address was requested" };
    let text = NoticeText { username, new_email, changed, service: SERVICE_NAME };
    let html = NoticeHtml { subject, username, recipient: old, new_email, changed, service: SERVICE_NAME };
    Ok(mail::compose(kind, old, subject, &text, &html)?)
}

/// Tells the Mailer that mail is waiting (it also polls, so a lost wake-up only delays it).
fn mail_waiting(app: &App) {
    app.services.mailer.wake();
}

/// The user and its verification mail, in one transaction (signup).
pub async fn create_with_verification(app: &App, create: users::Create) -> Result<UserRecord, FlowError> {
    let verification = verification(app, &create.username, &create.email)?;
    let user = app.services.db.run(ops::SignUp { user: create, verification }).await?;
    mail_waiting(app);
    Ok(user)
}

/// Counts one mail for `user_id` against `RATE_LIMIT_RECOVERY_ACCOUNT`; the caller is the
/// account's own holder, so it may be told how long to wait.
async fn spend_account_budget(app: &App, user_id: Uuid) -> Result<(), FlowError> {
    if !app.config.limits.enabled {
        return Ok(());
    }
    let limit = app.config.accounts.recovery_account;
    let class = LimitClass::RecoveryAccount;
    let hit = rate::Hit {
        class,
        subject: Subject::Account(Account::User(user_id)),
        limit: limit.limit,
        window: limit.window,
    };
    let decision = app.services.redis.run(hit).await?;
    if !decision.allowed {
        super::limits::denied(app, class);
        return Err(FlowError::Throttled { retry_after: decision.retry_after });
    }
    Ok(())
}

/// `POST /api/v1/users/verify-email/resend`: a new verification mail (voiding the older links)
/// unless the address is verified already, which is answered alike and sends nothing.
pub async fn resend(app: &App, principal: &Principal) -> Result<(), FlowError> {
    let db = &app.services.db;
    let user = db.run(users::Get { id: principal.user_id }).await?.ok_or(FlowError::UserGone)?;
    if user.email_verified {
        return Ok(());
    }
    spend_account_budget(app, user.id).await?;
    let verification = verification(app, &user.username, &user.email)?;
    match db.run(ops::ResendVerification { user_id: user.id, email: user.email, verification }).await? {
        ResendOutcome::Sent => {
            mail_waiting(app);
            Ok(())
        }
        ResendOutcome::AlreadyVerified => Ok(()),
        ResendOutcome::AddressChanged => Err(FlowError::Contention),
        ResendOutcome::Gone => Err(FlowError::UserGone),
    }
}

/// After a login was refused for an unverified address (the password was right): a fresh link,
/// within the account's mail budget, so that an account whose link expired is not stuck. Once
/// the budget is spent nothing is sent, silently.
pub async fn resend_after_refusal(app: &App, user: &UserRecord) -> Result<(), FlowError> {
    match spend_account_budget(app, user.id).await {
        Err(FlowError::Throttled { .. }) => return Ok(()),
        other => other?,
    }
    let verification = verification(app, &user.username, &user.email)?;
    let resend = ops::ResendVerification { user_id: user.id, email: user.email.clone(), verification };
    if app.services.db.run(resend).await? == ResendOutcome::Sent {
        mail_waiting(app);
    }
    Ok(())
}

/// The digest of a presented token, or the common refusal if it is no token of ours.
fn digest_of(token: &str) -> Result<Vec<u8>, FlowError> {
    Secret::parse(token).map(|s| s.digest()).ok_or(FlowError::InvalidAccountToken)
}

fn applied(outcome: SpendOutcome) -> Result<UserRecord, FlowError> {
    match outcome {
        SpendOutcome::Applied(user) => Ok(user),
        SpendOutcome::Refused(reason) => {
            tracing::debug!(reason = ?reason, "a mailed token was refused");
            Err(FlowError::InvalidAccountToken)
        }
        SpendOutcome::Stale => {
            tracing::debug!("a mailed token no longer matches the account's address");
            Err(FlowError::InvalidAccountToken)
        }
    }
}

/// Spends a verification token: the address it was mailed to is verified, if it is still the
/// account's.
pub async fn verify(app: &App, token: &str) -> Result<UserRecord, FlowError> {
    let digest = digest_of(token)?;
    applied(app.services.db.run(ops::Verify { digest }).await?)
}

/// Whether a link's token is live (its page then shows the button); never spends it.
pub async fn is_live(app: &App, purpose: Purpose, token: &str) -> Result<bool, FlowError> {
    let Some(secret) = Secret::parse(token) else { return Ok(false) };
    let live = auth_actors::db::account_tokens::IsLive { purpose, digest: secret.digest() };
    Ok(app.services.db.run(live).await?)
}

/// `POST /api/v1/users/email/change`: checks the password (as a password change checks the old
/// one), then mails a confirmation link to the new address and a notice to the old one.
pub async fn request_change(
    app: &App,
    principal: &Principal,
    input: ChangeInput,
    peer: &Peer,
) -> Result<(), FlowError> {
    let new_email = Email::parse(input.new_email)
        .map_err(|e| FieldError::new("new_email", e.message.replace("email", "new_email")))?
        .into_inner();
    let db = &app.services.db;
    let current = db.run(users::Get { id: principal.user_id }).await?.ok_or(FlowError::UserGone)?;
    if new_email.to_lowercase() == current.email.to_lowercase() {
        return Err(FieldError::new("new_email", "new_email is the account's address already").into());
    }
    let verified_version = super::account::check_old_password(app, current.id, input.password, peer).await?;
    spend_account_budget(app, current.id).await?;

    let secret = Secret::generate()?;
    let ttl = app.config.accounts.email_change_ttl;
    let link = mail::link(&app.config.tokens.public_url, CONFIRM_CHANGE_PAGE, &[("token", &secret.encode())]);
    let words = in_words(ttl);
    let subject = "Confirm your new email address";
    let username = current.username.as_str();
    let text = ChangeText { username, recipient: &new_email, link: &link, ttl: &words, service: SERVICE_NAME };
    let html = ChangeHtml { subject, username, recipient: &new_email, link: &link, ttl: &words, service: SERVICE_NAME };
    let confirmation = TokenMail {
        digest: secret.digest(),
        ttl,
        mail: mail::compose("email_change", &new_email, subject, &text, &html)?,
    };
    let notice = notice("email_change_requested", username, &current.email, &new_email, false)?;
    let request = ops::RequestChange {
        user_id: current.id,
        verified_version,
        old_email: current.email,
        new_email,
        confirmation,
        notice,
        ip: peer.ip_string(),
    };
    match db.run(request).await? {
        ChangeRequestOutcome::Requested => {
            mail_waiting(app);
            Ok(())
        }
        ChangeRequestOutcome::Changed => Err(FlowError::PasswordChangedMeanwhile),
        ChangeRequestOutcome::Gone => Err(FlowError::UserGone),
    }
}

/// Spends an email-change token: the account moves to the token's address (verified), the old
/// address is told, and every instance sees the new address at once (the operation replaces the
/// authorization epoch). The new address taken meanwhile by another account: 409, nothing
/// changed.
pub async fn confirm_change(app: &App, token: &str) -> Result<UserRecord, FlowError> {
    let digest = digest_of(token)?;
    let db = &app.services.db;
    let pending = db.run(ops::PendingChange { digest: digest.clone() }).await?.ok_or(FlowError::InvalidAccountToken)?;
    let user = db.run(users::Get { id: pending.user_id }).await?.ok_or(FlowError::InvalidAccountToken)?;
    let notice = notice("email_changed", &user.username, &pending.old_email, &pending.new_email, true)?;
    let user = applied(db.run(ops::ConfirmChange { digest, old_email: pending.old_email, notice }).await?)?;
    mail_waiting(app);
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_words() {
        assert_eq!(in_words(Duration::from_secs(24 * 3600)), "24 hours");
        assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(in_words(Duration::from_secs(90)), "2 minutes");
        assert_eq!(in_words(Duration::from_secs(1)), "1 minute");
    }
}
