//! Password reset (SPEC §9): a link mailed to the account's address, and the reset it allows.
//!
//! **Asking for a link** ([`forgot`]). The route's class (`recovery`, `RATE_LIMIT_RECOVERY`)
//! has already counted the request against its IP, and the address was parsed: from here on the
//! answer is the same 202 whether an account has the address or not, and it is sent before
//! anything about the account is looked at. The work runs in a task of its own
//! ([`send_link`]): look the address up (an active account, or nothing is sent: no mail to
//! strangers), spend one of the account's mails (`RATE_LIMIT_RECOVERY_ACCOUNT`; past it,
//! silently nothing), make a token of 256 random bits, render the mail with its link, and store
//! the token's digest with the mail in one transaction (which voids the account's older reset
//! tokens). So neither the answer's timing nor its errors depend on the account; failures of
//! the task are logged, never with the address.
//!
//! **Using it** ([`reset`]). The token must be live and of this purpose, its account active and
//! still at the address the link was mailed to ([`Holder`]), checked before any hashing so that
//! dead links cost no Argon2; the new password passes the same policy as at signup; it is hashed
//! on the hashing pool; then one transaction ([`Reset`]) spends the token, replaces the hash,
//! raises the password version, revokes every session, records `password_reset` and enqueues
//! the notice. After the commit, every access token of the account is fenced off (the
//! not-before marker covers every token issued until now, the session markers any minted by a
//! refresh that committed just before), and the account's login lockout is lifted: the reset
//! proved control of the mailbox, and the password the lock protected is gone.
//!
//! Every refused link (unknown, tampered, expired, used, voided, of another purpose, of a
//! disabled account) is the same [`FlowError::InvalidAccountToken`].

use askama::Template;
use auth_actors::db::outbox::OutgoingMail;
use auth_actors::db::password_reset::{FindByEmail, Holder, Issue, Reset, ResetOutcome, Target};
use auth_actors::keyspace::{Account, LimitClass};
use auth_actors::redis::lockout;
use serde::Deserialize;

use super::error::{Dependency, FlowError};
use super::{limits, logout};
use crate::app::App;
use crate::domain::{Email, Password, Peer};
use crate::mail::{self, RenderError};
use crate::secret::Secret;

/// The path of the hosted page a reset link opens.
pub const RESET_PAGE: &str = "/account/reset-password";

/// `POST /api/v1/auth/password/forgot`, as JSON or as a form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgotInput {
    pub email: Email,
}

/// `POST /api/v1/auth/password/reset`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetInput {
    pub token: String,
    pub new_password: String,
}

#[derive(Template)]
#[template(path = "mail/password_reset.txt")]
struct LinkText<'a> {
    service: &'a str,
    username: &'a str,
    recipient: &'a str,
    link: &'a str,
    minutes: u64,
}

#[derive(Template)]
#[template(path = "mail/password_reset.html")]
struct LinkHtml<'a> {
    subject: &'a str,
    service: &'a str,
    username: &'a str,
    recipient: &'a str,
    link: &'a str,
    minutes: u64,
}

#[derive(Template)]
#[template(path = "mail/password_changed.txt")]
struct NoticeText<'a> {
    service: &'a str,
    username: &'a str,
    recipient: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_changed.html")]
struct NoticeHtml<'a> {
    subject: &'a str,
    service: &'a str,
    username: &'a str,
    recipient: &'a str,
}

/// A mail that could not be rendered is a bug of a template: the request fails as the mail
/// part of the service being unavailable, and the cause is logged.
fn rendered(result: Result<OutgoingMail, RenderError>) -> Result<OutgoingMail, FlowError> {
    result.map_err(|e| {
        tracing::error!(error = %e, "a password-reset mail could not be rendered");
        FlowError::Unavailable(Dependency::Actor("mail"))
    })
}

/// Accepts a request for a reset link: the caller answers 202 at once, the same for every
/// address, and the link (if any) is sent by a task of its own.
pub fn forgot(app: &App, input: ForgotInput) {
    let app = app.clone();
    let email = input.email.into_inner();
    tokio::spawn(async move {
        if let Err(e) = send_link(&app, &email).await {
            // The address stays out of the log: it would say who asked about which account.
            tracing::warn!(error = %e, "a password-reset link could not be sent");
        }
    });
}

/// The work behind [`forgot`]: a link to a known, active account, within its mail budget.
async fn send_link(app: &App, email: &str) -> Result<(), FlowError> {
    let db = &app.services.db;
    let Some(target) = db.run(FindByEmail { email: email.to_string() }).await? else { return Ok(()) };
    if !limits::spend_for_account(app, LimitClass::RecoveryAccount, Account::User(target.user_id)).await? {
        tracing::info!(user_id = %target.user_id, "password-reset mail withheld: the account's mail budget is spent");
        return Ok(());
    }
    let secret = Secret::generate()?;
    let ttl = app.config.accounts.reset_ttl;
    let link = mail::link(&app.config.tokens.public_url, RESET_PAGE, &[("token", &secret.encode())]);
    let mail = link_mail(&target, &link, ttl.as_secs().div_ceil(60))?;
    let issue = Issue { user_id: target.user_id, email: target.email, digest: secret.digest(), ttl, mail };
    if db.run(issue).await? {
        wake_mailer(app);
    }
    Ok(())
}

fn link_mail(target: &Target, link: &str, minutes: u64) -> Result<OutgoingMail, FlowError> {
    let subject = "Reset your password";
    let (service, username, recipient) = (mail::SERVICE_NAME, target.username.as_str(), target.email.as_str());
    let text = LinkText { service, username, recipient, link, minutes };
    let html = LinkHtml { subject, service, username, recipient, link, minutes };
    rendered(mail::compose("password_reset", recipient, subject, &text, &html))
}

fn notice_mail(target: &Target) -> Result<OutgoingMail, FlowError> {
    let subject = "Your password was changed";
    let (service, username, recipient) = (mail::SERVICE_NAME, target.username.as_str(), target.email.as_str());
    let text = NoticeText { service, username, recipient };
    let html = NoticeHtml { subject, service, username, recipient };
    rendered(mail::compose("password_changed", recipient, subject, &text, &html))
}

/// Mail was committed to the outbox: have the Mailer look now rather than at its next poll.
fn wake_mailer(app: &App) {
    app.services.mailer.wake();
}

/// The account a reset link is for, if the link is live (a GET of the reset page shows its
/// form only then). Spends nothing.
pub async fn holder(app: &App, token: &str) -> Result<Target, FlowError> {
    let secret = Secret::parse(token).ok_or(FlowError::InvalidAccountToken)?;
    holder_of(app, &secret).await
}

async fn holder_of(app: &App, secret: &Secret) -> Result<Target, FlowError> {
    app.services.db.run(Holder { digest: secret.digest() }).await?.ok_or(FlowError::InvalidAccountToken)
}

/// Resets the password with the token of a reset link (see the module documentation).
pub async fn reset(app: &App, input: ResetInput, peer: &Peer) -> Result<(), FlowError> {
    let secret = Secret::parse(&input.token).ok_or(FlowError::InvalidAccountToken)?;
    let target = holder_of(app, &secret).await?;
    let policy = (&app.config.passwords).into();
    let password = Password::new(policy, input.new_password, &target.username, &target.email)?;
    // After the token was found live, so that a stranger's guesses cause no range API request.
    crate::passwords::breach::check(app.breach_api.as_ref(), &app.metrics, &password).await?;
    let password_hash = app.hasher.hash(password.into_inner()).await?;
    let notice = notice_mail(&target)?;
    let reset = Reset { digest: secret.digest(), password_hash, notice, ip: peer.ip_string() };
    let (user_id, revoked) = match app.services.db.run(reset).await? {
        ResetOutcome::Reset { user_id, revoked } => (user_id, revoked),
        ResetOutcome::Refused(why) => {
            tracing::info!(reason = why.as_str(), "password reset refused");
            return Err(FlowError::InvalidAccountToken);
        }
    };
    wake_mailer(app);
    if let Err(e) = revoke_access(app, user_id, revoked).await {
        // The password and the sessions changed (they are in PostgreSQL); only the fence of
        // access tokens already issued failed. The caller gets the error; an operator sees it.
        tracing::error!(user_id = %user_id, error = %e, "password reset committed, but its access-token fence failed");
        return Err(e);
    }
    Ok(())
}

/// After a reset: fence off every access token of the account and lift its login lockout.
async fn revoke_access(app: &App, user_id: uuid::Uuid, revoked: Vec<uuid::Uuid>) -> Result<(), FlowError> {
    logout::fence_access_tokens(app, user_id).await?;
    logout::fence_sessions(app, user_id, revoked).await?;
    if app.config.limits.enabled {
        app.services.redis.run(lockout::ClearLockout { account: Account::User(user_id) }).await?;
    }
    Ok(())
}
