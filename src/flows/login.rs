//! Login: look up → reserve an attempt → verify → sign → store the session.
//!
//! `POST /api/v1/auth/login` (form) and `POST /api/v1/auth/login-json` (JSON) differ only in
//! parsing; both call [`login`]. The hosted sign-in page of the browser flow uses the same
//! [`check_password`] (steps 2 to 6).
//!
//! 1. **Per-IP rate limit.** the dispatcher (`crate::routes::dispatch`) counts the request in class
//!    `login` (the `Hit` command, key `rl:login:ip:<address>`, GCRA script): 429 when denied.
//! 2. **Bounds.** An empty login, a login over 254 bytes, or a password over four times
//!    `PASSWORD_MAX_LENGTH` is answered with the common 401 before any work.
//! 3. **Look up via the Database.** `DatabaseHandle::run(db::users::FindCredentials { .. })`
//!    picks a worker (an idle one first) and sends it the operation; the worker runs its SQL (by
//!    email when the login contains `@`, else by username; case-insensitive), returning the user,
//!    its current roles and its password hash, or nothing. The account key is the user id, or
//!    `unknown:<lowercased login>` for an unknown name.
//! 4. **Reserve an attempt in Redis (Lua).** Unless `RATE_LIMIT_ENABLED=false`, the
//!    `BeginLogin` command runs the `BEGIN_LOGIN` script on the account's `{acct:<account>}lock`,
//!    `…att` and `…lvl` keys (one hash slot) in one atomic step:
//!    a locked account is refused; otherwise the attempt counter is incremented, and the attempt
//!    past `LOCKOUT_THRESHOLD` sets the lock (duration `LOCKOUT_BASE × 2^(level−1)`, at most
//!    `LOCKOUT_MAX`) and resets the counter. A refused attempt counts
//!    `auth_logins_total{outcome="locked"}`; the one that started the lock also counts
//!    `auth_lockouts_total` and records a `lockout` security event through the Database. Both get
//!    429 with `Retry-After`. Then the per-account limit (the `Hit` command, key
//!    `rl:login_account:<account>`, `RATE_LIMIT_LOGIN_ACCOUNT`) may answer 429. Because the
//!    reservation is made before any hashing, parallel guesses cannot get more than the threshold
//!    checked.
//! 5. **Argon2 on the hashing pool.** `PasswordHasher::verify` waits at most `HASH_QUEUE_TIMEOUT`
//!    for a slot (else 503), then runs the verification on one of the argon2 threads with that
//!    thread's reused memory — against the stored hash, or against the dummy hash for an unknown
//!    user. A correct password whose hash was made with other parameters is re-hashed in the same
//!    job.
//! 6. **Record the failure, or clear the attempts.** A wrong password, an unknown user or an
//!    inactive user counts `auth_logins_total{outcome="failure"}` and runs
//!    `db::history::RecordFailure`, which writes in one statement a `login_failed` security
//!    event (marked `unknown_user` when there is no user) and, for a known user, a failed history
//!    row; the answer is the common `401 invalid username or password`. On success, a re-hashed
//!    password is stored (`db::users::Rehash`, an `UPDATE ... WHERE password_hash = <the hash that
//!    was verified>`, so it never overwrites a password changed meanwhile) and the
//!    `LoginSucceeded` command deletes the account's attempt and level keys. With
//!    `REQUIRE_VERIFIED_EMAIL=true`, an account whose address is not verified is then refused
//!    (403 `email_unverified`): only after the right password, so the refusal tells a stranger
//!    nothing. Sessions that exist already go on refreshing (see docs/SECURITY.md).
//! 7. **Store the session and its history in one transaction.** A session id (UUIDv7) and a
//!    refresh secret of 32 random bytes are made; `db::sessions::Start` first takes a share lock on
//!    the user row *if it is active and its `password_version` is still the one the login read*
//!    (every password change raises it; a re-hash does not). Otherwise nothing is written and the
//!    login fails with the common 401), then inserts the family (`refresh_families`), its first
//!    token (`refresh_tokens`, SHA-256 of the secret only) and the successful `login_history` row.
//! 8. **Sign through the KeyManager snapshot on a blocking thread**, only now that the session is
//!    stored: `tokens::issue_access` builds the claims (`sid` = session id, `jti` = UUIDv7) and
//!    `KeyManagerHandle::sign` takes the current `Arc<KeySet>` (503 if the KeyManager's slot is
//!    empty) and signs with the active key inside `spawn_blocking`. No message is sent. Because
//!    the session exists before its first token, a logout-all or password change that commits
//!    afterwards finds the session and fences it; one that committed before makes step 7 fail
//!    (password change) or came first (logout-all).
//! 9. The route answers 200 `{access_token, token_type: "bearer", expires_in}` with the refresh
//!    cookie and `Cache-Control: no-store`; `auth_logins_total{outcome="success"}` and
//!    `auth_tokens_issued_total` are counted.

use auth_actors::db::history;
use auth_actors::db::sessions::{self, NewSession, NewToken, SessionKind, StartOutcome};
use auth_actors::db::users;
use auth_actors::keyspace::Account;
use auth_actors::redis::lockout;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::FlowError;
use super::tokens::{self, Issued};
use crate::app::App;
use crate::domain::Peer;
use crate::metrics::{Outcome, OutcomeLabels};
use crate::passwords::Verified;
use crate::secret::Secret;

#[derive(Debug, Deserialize)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
}

pub async fn login(app: &App, input: LoginInput, peer: &Peer) -> Result<Issued, FlowError> {
    let checked = check_password(app, input, peer).await?;
    if checked.factors.any() {
        let challenge = super::mfa::require(app, &checked, super::mfa::StepKind::Api).await?;
        return Err(FlowError::MfaRequired(Box::new(challenge)));
    }
    start_api_session(app, &checked, peer).await
}

/// Steps 7 to 9 for a user fully signed in (its password, and its second factor if it has
/// one): opens an API session and signs its first access token.
pub async fn start_api_session(app: &App, checked: &Checked, peer: &Peer) -> Result<Issued, FlowError> {
    let (refresh_token, session) = new_session(checked, SessionKind::Api, app.config.tokens.refresh_ttl, peer)?;
    let family = session.family_id;
    if app.services.db.run(sessions::Start(session)).await? == StartOutcome::CredentialsChanged {
        return Err(FlowError::BadCredentials);
    }
    let (access_token, expires_in) = tokens::issue_access(app, &checked.user, family, &checked.amr, None).await?;
    app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::success }).inc();
    Ok(Issued { access_token, expires_in, refresh_token })
}

pub use super::mfa::Checked;

/// Steps 2 to 4: the credential check every sign-in shares (the API login and the hosted
/// sign-in page): look up, the account gate, argon2, the failure record or the re-hash.
pub async fn check_password(app: &App, input: LoginInput, peer: &Peer) -> Result<Checked, FlowError> {
    let LoginInput { username: login, password } = input;
    if login.is_empty() || login.len() > 254 || password.len() > 4 * app.config.passwords.max_length {
        return Err(FlowError::BadCredentials);
    }
    let db = &app.services.db;
    let found = db.run(users::FindCredentials { login: login.clone() }).await?;
    let account = match &found {
        Some(c) => Account::User(c.user.id),
        None => Account::unknown(&login),
    };
    super::limits::gate(app, &account, peer).await?;

    let stored = found.as_ref().map(|c| c.password_hash.clone());
    let verified = app.hasher.verify(password, stored).await?;
    let (user, password_version, factors) = match (found, verified) {
        (Some(c), Verified::Yes) if c.user.is_active => (c.user, c.password_version, c.factors),
        (Some(c), Verified::YesRehashed(new)) if c.user.is_active => {
            // The re-hash replaces only the hash that was verified, so it can never undo a
            // password change; if it finds another hash, the session start decides.
            db.run(users::Rehash { id: c.user.id, old: c.password_hash, new }).await?;
            (c.user, c.password_version, c.factors)
        }
        (found, _) => {
            app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::failure }).inc();
            // One statement whether or not the user exists, so a failure takes the same time.
            let failure = history::RecordFailure {
                user_id: found.map(|c| c.user.id),
                ip: peer.ip_string(),
                user_agent: peer.user_agent.clone(),
            };
            db.run(failure).await?;
            return Err(FlowError::BadCredentials);
        }
    };
    // An account with a second factor is signed in only once the factor is checked too: until
    // then its failed attempts stand (`mfa::complete` clears them).
    if app.config.limits.enabled && !factors.any() {
        app.services.redis.run(lockout::LoginSucceeded { account }).await?;
    }
    // Only now, after the right password: a stranger learns nothing from this refusal.
    if app.config.accounts.require_verified_email && !user.email_verified {
        // A fresh link (within the account's mail budget), so that an account whose link
        // expired is not stuck: resending otherwise needs a Bearer token it cannot get.
        if let Err(e) = super::email::resend_after_refusal(app, &user).await {
            tracing::warn!(error = %e, "no new verification mail after a refused login");
        }
        return Err(FlowError::EmailUnverified);
    }
    let amr = vec![super::mfa::amr::PWD.to_string()];
    Ok(Checked { user, password_version, factors, amr })
}

/// A new session of `kind` for a user whose password was just checked: its secret (for the
/// client) and what to store (only the secret's digest).
pub fn new_session(
    checked: &Checked,
    kind: SessionKind,
    ttl: std::time::Duration,
    peer: &Peer,
) -> Result<(String, NewSession), FlowError> {
    let secret = Secret::generate()?;
    let session = NewSession {
        user_id: checked.user.id,
        family_id: Uuid::now_v7(),
        kind,
        token: NewToken { id: Uuid::now_v7(), hash: secret.digest(), expires_at: OffsetDateTime::now_utc() + ttl },
        ip_address: peer.ip_string(),
        user_agent: peer.user_agent.clone(),
        password_version: checked.password_version,
        amr: checked.amr.clone(),
    };
    Ok((secret.encode(), session))
}
