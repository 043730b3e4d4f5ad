//! TOTP (RFC 6238) as a second factor, and its recovery codes (SPEC §9, "Second factors").
//!
//! The parameters are the ones every authenticator app supports: HMAC-SHA-1, 6 digits, 30 s
//! steps, a code accepted one step early or late, a 160-bit secret. The `otpauth://` URI names
//! the issuer [`crate::mail::SERVICE_NAME`] and the account's username.
//!
//! 1. **Enrol** ([`enrol`], `POST /api/v1/mfa/totp`). Needs `MFA_ENCRYPTION_KEYS` (503
//!    otherwise). 160 random bits are sealed (AES-256-GCM under the first key of the ring, the
//!    user id as additional data, see [`crate::sealing`]) and stored unconfirmed
//!    (`db::totp::StartEnrolment`, which replaces an unconfirmed authenticator and never a
//!    confirmed one: 409). The secret (base32) and the URI are shown once; an unconfirmed
//!    authenticator is no factor.
//! 2. **Confirm** ([`confirm`]). The code is checked against the pending secret (a wrong code is
//!    422 and counts against nothing: the caller already holds a session and the secret). Ten
//!    recovery codes are drawn (50 random bits each, shown as `xxxx-xxxx-xx` in a base32
//!    alphabet) and `db::totp::Confirm` stores their SHA-256 digests, marks the authenticator
//!    confirmed with the code's step as its last accepted one, records `mfa_enrolled` and
//!    enqueues a security notice, in one transaction. Confirming again (after a new enrolment)
//!    replaces the codes.
//! 3. **The second step** ([`second_step`], after [`super::mfa::attempt`] spent an attempt of the
//!    `mfa_token` and passed the lockout gate). A TOTP code is checked for the current step ±1,
//!    then its step is accepted atomically (`db::totp::AcceptStep`: `last_step < step`), so a
//!    code is accepted once, even when two requests carry it at the same moment, and never after
//!    a later one. A recovery code (case, spaces and dashes ignored) is spent atomically by its
//!    digest (`db::totp::UseRecoveryCode`, which records `recovery_code_used` with the count
//!    left). A wrong code is [`super::mfa::failed`]; a right one [`super::mfa::complete`]s the
//!    step with `amr` `["pwd","otp","mfa"]`.
//! 4. **Remove** ([`remove`], by the user with the password or a current code, both through the
//!    account's lockout gate exactly as a password change is) or by an admin ([`admin_remove`]:
//!    TOTP, recovery codes and every passkey). `db::totp::Remove` deletes, records `mfa_removed`
//!    and enqueues the notice in one transaction; the Mailer is woken after the commit.
//! 5. **Recovery codes again** ([`regenerate_recovery_codes`]): a new set of ten, with the same
//!    proof as a removal.
//!
//! The secret is never logged, never stored in the clear, and only returned at enrolment.

use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::db::outbox::OutgoingMail;
use auth_actors::db::totp as db;
use auth_actors::db::users::{self, UserRecord};
use auth_actors::keyspace::Account;
use auth_actors::redis::lockout;
use aws_lc_rs::digest::{SHA256, digest};
use totp_rs::{Algorithm, Builder, Totp};
use uuid::Uuid;

use super::authenticate::Principal;
use super::error::{Dependency, Entity, FlowError};
use super::login::Checked;
use super::mfa::{self, Step};
use crate::app::App;
use crate::domain::{FieldError, Peer};
use crate::mail;
use crate::sealing::KeyRing;

/// How many recovery codes a set has.
pub const RECOVERY_CODES: usize = 10;
/// The alphabet of recovery codes (RFC 4648 base32, lower case): 5 bits a character.
const CODE_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters of a recovery code (50 bits).
const CODE_CHARS: usize = 10;
/// Bytes of a TOTP secret (160 bits, RFC 4226 §4).
const SECRET_BYTES: usize = 20;

/// A TOTP authenticator being set up: the secret (base32) and its `otpauth://` URI.
#[derive(Clone)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(..)")
    }
}

/// What proves the user may remove the authenticator.
#[derive(Clone)]
pub enum Proof {
    Password(String),
    Code(String),
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proof::Password(_) => "Proof::Password(..)",
            Proof::Code(_) => "Proof::Code(..)",
        })
    }
}

/// Which kind of code a second step presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Totp,
    RecoveryCode,
}

impl CodeKind {
    /// The method's name in `methods`, bodies and events.
    pub fn method(self) -> &'static str {
        match self {
            CodeKind::Totp => "totp",
            CodeKind::RecoveryCode => "recovery_code",
        }
    }
}

fn keys(app: &App) -> Result<&KeyRing, FlowError> {
    app.mfa_keys.as_ref().ok_or(FlowError::Unavailable(Dependency::MfaKeys))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The authenticator of `secret`, labelled for `account`.
fn totp_of(secret: Vec<u8>, account: &str) -> Result<Totp, FlowError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(mail::SERVICE_NAME))
        .with_account_name(account.replace(':', ""))
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "a TOTP authenticator could not be built");
            FlowError::Unavailable(Dependency::MfaKeys)
        })
}

/// The step whose code `code` is, within one step of now (spaces ignored).
fn check_code(totp: &Totp, code: &str) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    totp.check(&code, now()).and_then(|step| i64::try_from(step).ok())
}

/// Opens the stored secret of `user_id`.
fn open(app: &App, user_id: Uuid, row: &db::TotpRow) -> Result<Vec<u8>, FlowError> {
    keys(app)?.open(&row.key_id, user_id.as_bytes(), &row.secret_sealed).map_err(|e| {
        tracing::error!(user_id = %user_id, error = %e, "a TOTP secret could not be opened");
        FlowError::Unavailable(Dependency::MfaKeys)
    })
}

/// A recovery code as stored: the SHA-256 of its normal form (lower case, no dashes or spaces).
fn recovery_digest(code: &str) -> Option<Vec<u8>> {
    let normal: String =
        code.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_lowercase()).collect();
    if normal.len() != CODE_CHARS || !normal.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
        return None;
    }
    Some(digest(&SHA256, normal.as_bytes()).as_ref().to_vec())
}

/// A new set of recovery codes: what the user is shown, and what is stored.
fn new_recovery_codes() -> Result<(Vec<String>, Vec<Vec<u8>>), FlowError> {
    let mut shown = Vec::with_capacity(RECOVERY_CODES);
    let mut digests = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let bytes: [u8; 8] = crate::secret::random()?;
        let mut bits = u64::from_le_bytes(bytes);
        let mut normal = String::with_capacity(CODE_CHARS);
        for _ in 0..CODE_CHARS {
            normal.push(char::from(CODE_ALPHABET[(bits & 31) as usize]));
            bits >>= 5;
        }
        digests.push(digest(&SHA256, normal.as_bytes()).as_ref().to_vec());
        shown.push(format!("{}-{}-{}", &normal[..4], &normal[4..8], &normal[8..]));
    }
    Ok((shown, digests))
}

#[derive(Template)]
#[template(path = "mail/mfa_changed.txt")]
struct NoticeText<'a> {
    service: &'a str,
    username: &'a str,
    recipient: &'a str,
    change: &'a str,
    advice: &'a str,
}

#[derive(Template)]
#[template(path = "mail/mfa_changed.html")]
struct NoticeHtml<'a> {
    subject: &'a str,
    service: &'a str,
    username: &'a str,
    recipient: &'a str,
    change: &'a str,
    advice: &'a str,
}

/// The security notice mailed when the account's second factors change.
fn notice(user: &UserRecord, change: &str) -> Result<OutgoingMail, FlowError> {
    let subject = "Your sign-in methods changed";
    let advice = "If this was not you, sign in, change your password and check your sign-in methods, \
                  or contact your administrator.";
    let (service, username, recipient) = (mail::SERVICE_NAME, user.username.as_str(), user.email.as_str());
    let text = NoticeText { service, username, recipient, change, advice };
    let html = NoticeHtml { subject, service, username, recipient, change, advice };
    Ok(mail::compose("mfa_changed", recipient, subject, &text, &html)?)
}

async fn user(app: &App, user_id: Uuid) -> Result<UserRecord, FlowError> {
    app.services.db.run(users::Get { id: user_id }).await?.ok_or(FlowError::UserGone)
}

/// Starts (or restarts) setting up TOTP for `user`: a new secret, unconfirmed.
pub async fn enrol(app: &App, user: &UserRecord) -> Result<Enrolment, FlowError> {
    let ring = keys(app)?;
    let secret: [u8; SECRET_BYTES] = crate::secret::random()?;
    let totp = totp_of(secret.to_vec(), &user.username)?;
    let otpauth_uri = totp.to_url().map_err(|e| {
        tracing::error!(error = %e, "a TOTP URI could not be built");
        FlowError::Unavailable(Dependency::MfaKeys)
    })?;
    let (secret_sealed, key_id) = ring.seal(user.id.as_bytes(), &secret).map_err(|e| {
        tracing::error!(error = %e, "a TOTP secret could not be sealed");
        FlowError::Unavailable(Dependency::MfaKeys)
    })?;
    let start = db::StartEnrolment { user_id: user.id, secret_sealed, key_id };
    if !app.services.db.run(start).await? {
        return Err(FlowError::MfaState("TOTP is already set up for this account; remove it first to set up another"));
    }
    Ok(Enrolment { secret: totp.secret().to_base32(), otpauth_uri })
}

const NOTHING_PENDING: &str = "no TOTP setup is waiting for confirmation; start one with POST /api/v1/mfa/totp";

/// Confirms the pending authenticator with a code; returns the ten recovery codes (shown once).
pub async fn confirm(app: &App, user_id: Uuid, code: &str, peer: &Peer) -> Result<Vec<String>, FlowError> {
    let row = app.services.db.run(db::Get { user_id }).await?;
    let Some(row) = row.filter(|r| !r.confirmed) else { return Err(FlowError::MfaState(NOTHING_PENDING)) };
    let account = user(app, user_id).await?;
    let totp = totp_of(open(app, user_id, &row)?, &account.username)?;
    let Some(step) = check_code(&totp, code) else {
        return Err(FieldError::new("code", "the code does not match the authenticator; check its clock").into());
    };
    let (shown, recovery_digests) = new_recovery_codes()?;
    let confirm = db::Confirm {
        user_id,
        secret_sealed: row.secret_sealed,
        step,
        recovery_digests,
        notice: Some(notice(&account, "an authenticator app (TOTP) was added as a second factor.")?),
        ip: peer.ip_string(),
    };
    if !app.services.db.run(confirm).await? {
        return Err(FlowError::MfaState(NOTHING_PENDING));
    }
    app.services.mailer.wake();
    Ok(shown)
}

/// Checks `proof` for a user with a confirmed authenticator `row`, through the account's
/// lockout gate: the password as a password change checks it, or a current TOTP code (whose
/// step is then used up).
async fn check_proof(app: &App, user_id: Uuid, row: &db::TotpRow, proof: Proof, peer: &Peer) -> Result<(), FlowError> {
    match proof {
        Proof::Password(password) => {
            super::account::check_old_password(app, user_id, password, peer).await?;
        }
        Proof::Code(code) => {
            let account = Account::User(user_id);
            super::limits::gate(app, &account, peer).await?;
            let totp = totp_of(open(app, user_id, row)?, "-")?;
            let accepted = match check_code(&totp, &code) {
                Some(step) => app.services.db.run(db::AcceptStep { user_id, step }).await?,
                None => false,
            };
            if !accepted {
                let event = SecurityEvent::MfaFailed { user: user_id, method: "totp" };
                app.services.db.run(events::Record { event, ip: peer.ip_string() }).await?;
                return Err(FlowError::InvalidMfaCode);
            }
            if app.config.limits.enabled {
                app.services.redis.run(lockout::LoginSucceeded { account }).await?;
            }
        }
    }
    Ok(())
}

async fn confirmed(app: &App, user_id: Uuid) -> Result<db::TotpRow, FlowError> {
    let row = app.services.db.run(db::Get { user_id }).await?;
    row.filter(|r| r.confirmed).ok_or(FlowError::NotFound(Entity::Totp))
}

/// Removes the authenticator and its recovery codes.
pub async fn remove(app: &App, user_id: Uuid, proof: Proof, peer: &Peer) -> Result<(), FlowError> {
    let row = confirmed(app, user_id).await?;
    check_proof(app, user_id, &row, proof, peer).await?;
    let account = user(app, user_id).await?;
    let remove = db::Remove {
        user_id,
        passkeys: false,
        by: None,
        notice: Some(notice(&account, "the authenticator app (TOTP) and its recovery codes were removed.")?),
        ip: peer.ip_string(),
    };
    match app.services.db.run(remove).await? {
        None => Err(FlowError::UserGone),
        Some(removed) if !removed.any() => Err(FlowError::NotFound(Entity::Totp)),
        Some(_) => {
            app.services.mailer.wake();
            Ok(())
        }
    }
}

/// Removes every second factor of a user (TOTP, recovery codes, passkeys): an admin's help for a
/// user who lost them. The user is mailed a notice.
pub async fn admin_remove(app: &App, admin: &Principal, raw_id: &str, peer: &Peer) -> Result<(), FlowError> {
    let user_id: Uuid = raw_id.parse().map_err(|_| FlowError::NotFound(Entity::User))?;
    let account = app.services.db.run(users::Get { id: user_id }).await?.ok_or(FlowError::NotFound(Entity::User))?;
    let remove = db::Remove {
        user_id,
        passkeys: true,
        by: Some(admin.user_id),
        notice: Some(notice(
            &account,
            "an administrator removed every second factor of the account (authenticator app, recovery codes, passkeys).",
        )?),
        ip: peer.ip_string(),
    };
    let removed = app.services.db.run(remove).await?.ok_or(FlowError::NotFound(Entity::User))?;
    if removed.any() {
        app.services.mailer.wake();
    }
    Ok(())
}

/// A new set of recovery codes (the old set stops working), with the same proof as a removal.
pub async fn regenerate_recovery_codes(
    app: &App,
    user_id: Uuid,
    proof: Proof,
    peer: &Peer,
) -> Result<Vec<String>, FlowError> {
    let row = confirmed(app, user_id).await?;
    check_proof(app, user_id, &row, proof, peer).await?;
    let (shown, digests) = new_recovery_codes()?;
    if !app.services.db.run(db::ReplaceRecoveryCodes { user_id, digests }).await? {
        return Err(FlowError::NotFound(Entity::Totp));
    }
    Ok(shown)
}

/// What the user has set up.
pub async fn summary(app: &App, user_id: Uuid) -> Result<db::Summary, FlowError> {
    Ok(app.services.db.run(db::GetSummary { user_id }).await?)
}

/// Whether `code` is right for the user now, spending it (the TOTP step, or the recovery code).
async fn spend_code(app: &App, user_id: Uuid, kind: CodeKind, code: &str, peer: &Peer) -> Result<bool, FlowError> {
    match kind {
        CodeKind::Totp => {
            let Some(row) = app.services.db.run(db::Get { user_id }).await?.filter(|r| r.confirmed) else {
                return Ok(false);
            };
            let totp = totp_of(open(app, user_id, &row)?, "-")?;
            match check_code(&totp, code) {
                Some(step) => Ok(app.services.db.run(db::AcceptStep { user_id, step }).await?),
                None => Ok(false),
            }
        }
        CodeKind::RecoveryCode => {
            let Some(digest) = recovery_digest(code) else { return Ok(false) };
            let spend = db::UseRecoveryCode { user_id, digest, ip: peer.ip_string() };
            Ok(app.services.db.run(spend).await?.is_some())
        }
    }
}

/// The second step with a TOTP or recovery code, on a step [`super::mfa::attempt`] returned.
pub async fn second_step(app: &App, step: Step, kind: CodeKind, code: &str, peer: &Peer) -> Result<Checked, FlowError> {
    let method = kind.method();
    if !spend_code(app, step.user_id(), kind, code, peer).await? {
        return Err(mfa::failed(app, &step, method, peer).await);
    }
    mfa::complete(app, step, method, mfa::with_second_factor(mfa::amr::OTP), peer).await
}

/// The QR code of an `otpauth://` URI, as an SVG document (empty if the URI is too long for a
/// QR code, which an enrolment's never is).
pub fn qr_svg(otpauth_uri: &str) -> String {
    match qrcode::QrCode::new(otpauth_uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
        Err(e) => {
            tracing::error!(error = %e, "a QR code could not be drawn");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_ten_distinct_50_bit_codes_matched_loosely() {
        let (shown, digests) = new_recovery_codes().unwrap();
        assert_eq!(shown.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = digests.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for (code, d) in shown.iter().zip(&digests) {
            assert_eq!(code.len(), 12, "{code}");
            assert_eq!(recovery_digest(code).as_ref(), Some(d));
            assert_eq!(recovery_digest(&code.to_uppercase().replace('-', " ")).as_ref(), Some(d));
        }
        assert_eq!(recovery_digest("short"), None);
        assert_eq!(recovery_digest("abcd-efgh-i1"), None);
    }

    #[test]
    fn a_code_is_checked_one_step_either_side() {
        let totp = totp_of(vec![7; SECRET_BYTES], "alice").unwrap();
        let t = now();
        let code = totp.generate(t).to_string();
        assert_eq!(check_code(&totp, &code), Some((t / 30) as i64));
        let early = totp.generate(t - 30).to_string();
        assert!(check_code(&totp, &early).is_some());
        let old = totp.generate(t - 120).to_string();
        assert_eq!(check_code(&totp, &old), None);
        assert_eq!(check_code(&totp, "12345x"), None);
        assert_eq!(check_code(&totp, &"1".repeat(5000)), None);
    }

    #[test]
    fn the_uri_names_the_service_and_the_account_and_the_qr_code_is_svg() {
        let totp = totp_of(vec![7; SECRET_BYTES], "alice").unwrap();
        let uri = totp.to_url().unwrap();
        assert!(uri.starts_with("otpauth://totp/auth-service:alice?"), "{uri}");
        assert!(uri.contains("issuer=auth-service"), "{uri}");
        let svg = qr_svg(&uri);
        assert!(svg.contains("<svg"), "{svg}");
    }
}
