//! The second step of a sign-in (SPEC §9, "Second factors"): what a login of an account with a
//! second factor gets instead of a session, and how a factor check completes it.
//!
//! 1. A password login (API or hosted page) of an account with a confirmed TOTP authenticator or
//!    a passkey does not open a session. [`require`] stores a pending step
//!    (`db::mfa::IssuePending`: the SHA-256 of a 256-bit `mfa_token`, the user, the password
//!    version that was verified, `MFA_TOKEN_TTL`, `MFA_MAX_ATTEMPTS`) and the login answers 403
//!    `mfa_required` with the token and the [`methods`] the account can use. The password's
//!    lockout attempts are *not* cleared yet: only a complete sign-in clears them.
//! 2. Every factor check starts with [`attempt`]: it spends one of the step's attempts (one
//!    atomic `UPDATE`: parallel guesses get no more than `MFA_MAX_ATTEMPTS` checks, and a step
//!    out of attempts is gone), then passes the account's lockout gate exactly as a password
//!    check does (`limits::gate`: the attempt is reserved before the check, so a run of wrong
//!    codes locks the account as wrong passwords do, race-free).
//! 3. A wrong code is [`failed`]: a `mfa_failed` security event and a failed login. A right one
//!    is [`complete`]d: the step is marked used (exactly one caller wins, so a token is single
//!    use even under parallel successes), the lockout attempts are cleared, and the caller gets
//!    a [`Checked`] whose `amr` names the factors used; `login::start_api_session` (or the hosted
//!    page's session start) opens the session from it, which re-checks the password version.

use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::db::mfa::{self, Factors, Pending};
use auth_actors::keyspace::Account;
use auth_actors::redis::lockout;

use super::error::{Challenge, FlowError};
use crate::app::App;
use crate::domain::Peer;
use crate::metrics::{Outcome, OutcomeLabels};
use crate::secret::Secret;

/// RFC 8176 `amr` values this service issues.
pub mod amr {
    /// Password.
    pub const PWD: &str = "pwd";
    /// One-time password: a TOTP code or a recovery code.
    pub const OTP: &str = "otp";
    /// Proof of possession of a hardware-bound key (a passkey that cannot leave its device).
    pub const HWK: &str = "hwk";
    /// Proof of possession of a software-secured key (a synced passkey).
    pub const SWK: &str = "swk";
    /// Multiple-factor authentication.
    pub const MFA: &str = "mfa";
}

/// The `acr` values the ID token carries (and discovery lists): a sign-in with more than one
/// factor is the OpenID PAPE multi-factor policy (the name relying parties already ask for in
/// `acr_values`); one with a password alone is this service's own single-factor name.
pub mod acr {
    pub const MFA: &str = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";
    pub const PASSWORD: &str = "urn:auth-service:acr:password";
}

/// The `acr` a sign-in with `amr` reaches.
pub fn acr_of(amr: &[String]) -> &'static str {
    if amr.iter().any(|m| m == amr::MFA) { acr::MFA } else { acr::PASSWORD }
}

/// `amr` after a password and one more factor (`otp`, `hwk` or `swk`).
pub fn with_second_factor(factor: &str) -> Vec<String> {
    vec![amr::PWD.to_string(), factor.to_string(), amr::MFA.to_string()]
}

/// The methods a login body may name for an account with `factors`.
pub fn methods(factors: Factors) -> Vec<&'static str> {
    let mut m = Vec::new();
    if factors.totp {
        m.extend(["totp", "recovery_code"]);
    }
    if factors.webauthn {
        m.push("webauthn");
    }
    m
}

/// A user whose password (and, once [`complete`]d, second factor) was just
/// checked, and the password version it matched.
#[derive(Debug)]
pub struct Checked {
    pub user: auth_actors::db::users::UserRecord,
    pub password_version: i32,
    /// The second factors the account has: with any, the password alone opens no session.
    pub factors: auth_actors::db::mfa::Factors,
    /// How the user was checked (RFC 8176): `["pwd"]` after the password alone.
    pub amr: Vec<String>,
}

/// Which session a completed step opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Api,
    Browser,
}

impl StepKind {
    fn as_str(self) -> &'static str {
        match self {
            StepKind::Api => "api",
            StepKind::Browser => "browser",
        }
    }
}

/// Step 1: stores a pending second step for a user whose password was just checked.
pub async fn require(app: &App, checked: &Checked, kind: StepKind) -> Result<Challenge, FlowError> {
    let secret = Secret::generate()?;
    let cfg = &app.config.mfa;
    let issue = mfa::IssuePending {
        digest: secret.digest(),
        user_id: checked.user.id,
        password_version: checked.password_version,
        session_kind: kind.as_str(),
        max_attempts: i32::try_from(cfg.max_attempts).unwrap_or(i32::MAX),
        ttl: cfg.token_ttl,
    };
    app.services.db.run(issue).await?;
    Ok(Challenge { mfa_token: secret.encode(), methods: methods(checked.factors), expires_in: cfg.token_ttl.as_secs() })
}

/// A pending step one attempt was spent on, ready for one factor check.
#[derive(Debug)]
pub struct Step {
    digest: Vec<u8>,
    pub pending: Pending,
}

impl Step {
    pub fn user_id(&self) -> uuid::Uuid {
        self.pending.user_id
    }

    pub fn kind(&self) -> StepKind {
        if self.pending.session_kind == "browser" { StepKind::Browser } else { StepKind::Api }
    }
}

/// Step 2: spends one attempt of the step `mfa_token` names (refused as
/// [`FlowError::InvalidMfaToken`] when it is unknown, used, expired, out of attempts or of
/// another kind), then passes the account's lockout gate.
pub async fn attempt(app: &App, mfa_token: &str, kind: StepKind, peer: &Peer) -> Result<Step, FlowError> {
    let digest = Secret::parse(mfa_token).ok_or(FlowError::InvalidMfaToken)?.digest();
    let pending =
        app.services.db.run(mfa::SpendAttempt { digest: digest.clone() }).await?.ok_or(FlowError::InvalidMfaToken)?;
    let step = Step { digest, pending };
    if step.kind() != kind {
        return Err(FlowError::InvalidMfaToken);
    }
    super::limits::gate(app, &Account::User(step.user_id()), peer).await?;
    Ok(step)
}

/// Looks at the step `mfa_token` names without spending an attempt: its user, if it is live.
pub async fn peek(app: &App, mfa_token: &str) -> Result<Option<Pending>, FlowError> {
    let Some(secret) = Secret::parse(mfa_token) else { return Ok(None) };
    Ok(app.services.db.run(mfa::PeekPending { digest: secret.digest() }).await?)
}

/// Step 3, a wrong factor: records it and answers [`FlowError::InvalidMfaCode`].
pub async fn failed(app: &App, step: &Step, method: &'static str, peer: &Peer) -> FlowError {
    app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::failure }).inc();
    let event = SecurityEvent::MfaFailed { user: step.user_id(), method };
    if let Err(e) = app.services.db.run(events::Record { event, ip: peer.ip_string() }).await {
        return e.into();
    }
    FlowError::InvalidMfaCode
}

/// Step 3, a right factor: marks the step used (one caller only), clears the account's lockout
/// attempts, and returns the user as checked with `amr`.
pub async fn complete(
    app: &App,
    step: Step,
    method: &'static str,
    amr: Vec<String>,
    peer: &Peer,
) -> Result<Checked, FlowError> {
    // One statement: the step used (by this caller only), and the user as it is now.
    let (user, factors) =
        app.services.db.run(mfa::Complete { digest: step.digest }).await?.ok_or(FlowError::InvalidMfaToken)?;
    let user_id = step.pending.user_id;
    if app.config.limits.enabled {
        app.services.redis.run(lockout::LoginSucceeded { account: Account::User(user_id) }).await?;
    }
    if !user.is_active {
        return Err(FlowError::BadCredentials);
    }
    let event = SecurityEvent::MfaSucceeded { user: user_id, method, passwordless: false };
    app.services.db.run(events::Record { event, ip: peer.ip_string() }).await?;
    Ok(Checked { user, password_version: step.pending.password_version, factors, amr })
}
