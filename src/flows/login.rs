//! Login: look up → reserve an attempt → verify → sign → store the session.
//!
//! 1. The per-IP limit has already been applied by the router (route class `login`).
//! 2. Look the user up by username or email.
//! 3. Reserve one password check on the account in Redis (atomic): a locked account, or one
//!    whose reservations are used up, is refused before any hashing, so parallel guesses cannot
//!    exceed the lockout threshold. The per-account rate limit is counted here too.
//! 4. Verify the password with argon2 — against a dummy hash when the user is unknown, so both
//!    cases cost the same work and get the same 401.
//! 5. On success: clear the account's failures, re-hash if the parameters changed (only over
//!    the very hash that was verified), store the session together with its history row (one
//!    transaction, which fails if the password changed since step 2), and only then sign the
//!    access token, so that a token is never minted for a session a concurrent logout-all or
//!    password change could miss.

use auth_actors::db::history::RecordFailure;
use auth_actors::db::sessions::{self, NewSession, NewToken, SessionKind, StartOutcome};
use auth_actors::db::users::UserRecord;
use auth_actors::db::users::{FindCredentials, Rehash};
use auth_actors::db::{events, events::SecurityEvent};
use auth_actors::keyspace::{Account, LimitClass, Subject};
use auth_actors::rate_limiter::{BeginLogin, Hit, LockoutPolicy, LoginGate, LoginSucceeded};
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

pub async fn login(app: &App, input: LoginInput, client: &Peer) -> Result<Issued, FlowError> {
    let checked = check_password(app, input, client).await?;
    let (refresh_token, session) = new_session(&checked, SessionKind::Api, app.config.tokens.refresh_ttl, client)?;
    let family = session.family_id;
    if app.services.users.run(sessions::Start(session)).await? == StartOutcome::CredentialsChanged {
        return Err(FlowError::BadCredentials);
    }
    let (access_token, expires_in) = tokens::issue_access(app, &checked.user, family, None).await?;
    app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::success }).inc();
    Ok(Issued { access_token, expires_in, refresh_token })
}

/// A user whose password was just checked, and the password version it matched.
#[derive(Debug)]
pub struct Checked {
    pub user: UserRecord,
    pub password_version: i32,
}

/// Steps 2 to 4: the credential check every sign-in shares (the API login and the hosted
/// sign-in page): look up, the account gate, argon2, the failure record or the re-hash.
pub async fn check_password(app: &App, input: LoginInput, client: &Peer) -> Result<Checked, FlowError> {
    let LoginInput { username: login, password } = input;
    if login.is_empty() || login.len() > 254 || password.len() > 4 * app.config.passwords.max_length {
        return Err(FlowError::BadCredentials);
    }
    let users = &app.services.users;
    let found = users.run(FindCredentials { login: login.clone() }).await?;
    let account = match &found {
        Some(c) => Account::User(c.user.id),
        None => Account::unknown(&login),
    };
    gate(app, &account, client).await?;

    let stored = found.as_ref().map(|c| c.password_hash.clone());
    let verified = app.hasher.verify(password, stored).await?;
    let (user, password_version) = match (found, verified) {
        (Some(c), Verified::Yes) if c.user.is_active => (c.user, c.password_version),
        (Some(c), Verified::YesRehashed(new)) if c.user.is_active => {
            // The re-hash replaces only the hash that was verified, so it can never undo a
            // password change; if it finds another hash, the session start decides.
            users.run(Rehash { id: c.user.id, old: c.password_hash, new }).await?;
            (c.user, c.password_version)
        }
        (found, _) => {
            app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::failure }).inc();
            // One statement whether or not the user exists, so a failure takes the same time.
            let failure = RecordFailure {
                user_id: found.map(|c| c.user.id),
                ip: client.ip_string(),
                user_agent: client.user_agent.clone(),
            };
            users.run(failure).await?;
            return Err(FlowError::BadCredentials);
        }
    };
    if app.config.limits.enabled {
        app.services.limiter.run(LoginSucceeded { account }).await?;
    }
    Ok(Checked { user, password_version })
}

/// A new session of `kind` for a user whose password was just checked: its secret (for the
/// client) and what to store (only the secret's digest).
pub fn new_session(
    checked: &Checked,
    kind: SessionKind,
    ttl: std::time::Duration,
    client: &Peer,
) -> Result<(String, NewSession), FlowError> {
    let secret = Secret::generate()?;
    let session = NewSession {
        user_id: checked.user.id,
        family_id: Uuid::now_v7(),
        kind,
        token: NewToken { id: Uuid::now_v7(), hash: secret.digest(), expires_at: OffsetDateTime::now_utc() + ttl },
        ip_address: client.ip_string(),
        user_agent: client.user_agent.clone(),
        password_version: checked.password_version,
    };
    Ok((secret.encode(), session))
}

/// Step 3: the account's lockout gate and per-account rate limit, for every check of a password
/// (a login, and the old password of a password change). A known user's account is its id, so
/// both share one lockout.
pub(crate) async fn gate(app: &App, account: &Account, client: &Peer) -> Result<(), FlowError> {
    let limits = &app.config.limits;
    if !limits.enabled {
        return Ok(());
    }
    let policy =
        LockoutPolicy { threshold: limits.lockout_threshold, base: limits.lockout_base, max: limits.lockout_max };
    let limiter = &app.services.limiter;
    if let LoginGate::Locked { retry_after, started_now } =
        limiter.run(BeginLogin { account: account.clone(), policy }).await?
    {
        app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::locked }).inc();
        if started_now {
            app.metrics.lockouts.inc();
            let user = match account {
                Account::User(id) => Some(*id),
                Account::Unknown(_) => None,
            };
            let event = SecurityEvent::Lockout { user, retry_after_secs: retry_after.as_secs() };
            app.services.users.run(events::Record { event, ip: client.ip_string() }).await?;
        }
        return Err(FlowError::Throttled { retry_after });
    }
    let per_account = limits.login_account;
    let hit = Hit {
        class: LimitClass::LoginAccount,
        subject: Subject::Account(account.clone()),
        limit: per_account.limit,
        window: per_account.window,
    };
    let decision = limiter.run(hit).await?;
    if !decision.allowed {
        super::limits::denied(app, LimitClass::LoginAccount);
        return Err(FlowError::Throttled { retry_after: decision.retry_after });
    }
    Ok(())
}
