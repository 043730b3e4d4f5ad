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

use auth_actors::db::sessions::{NewSession, NewToken, StartOutcome};
use auth_actors::rate_limiter::{LockoutPolicy, LoginGate};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Client;
use super::tokens::{self, Issued};
use crate::app::App;
use crate::http::ApiError;
use crate::metrics::{Outcome, OutcomeLabels};
use crate::passwords::Verified;

#[derive(Debug, Deserialize)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
}

/// The one answer to every failed credential check, whatever the reason.
pub fn bad_credentials() -> ApiError {
    ApiError::Unauthorized("invalid username or password".into())
}

pub async fn login(app: &App, input: LoginInput, client: &Client) -> Result<Issued, ApiError> {
    let LoginInput { username: login, password } = input;
    if login.is_empty() || login.len() > 254 || password.len() > 4 * app.config.passwords.max_length {
        return Err(bad_credentials());
    }
    let found = app.services.users.find_credentials(login.clone()).await?;
    let account = match &found {
        Some(c) => c.user.id.to_string(),
        None => format!("unknown:{}", login.to_lowercase()),
    };
    gate(app, &account, found.as_ref().map(|c| c.user.id), client).await?;

    let stored = found.as_ref().map(|c| c.password_hash.clone());
    let verified = app.hasher.verify(password, stored).await?;
    let (user, password_version) = match (found, verified) {
        (Some(c), Verified::Yes) if c.user.is_active => (c.user, c.password_version),
        (Some(c), Verified::YesRehashed(new_hash)) if c.user.is_active => {
            // The re-hash replaces only the hash that was verified, so it can never undo a
            // password change; if it finds another hash, the session start below decides.
            app.services.users.rehash_password(c.user.id, c.password_hash, new_hash).await?;
            (c.user, c.password_version)
        }
        (found, _) => {
            app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::failure }).inc();
            // One statement whether or not the user exists, so a failure takes the same time.
            let user_id = found.map(|c| c.user.id);
            app.services.users.record_login_failure(user_id, client.ip_string(), client.user_agent.clone()).await?;
            return Err(bad_credentials());
        }
    };
    if app.config.limits.enabled {
        app.services.limiter.login_succeeded(account).await?;
    }

    let family = Uuid::now_v7();
    let refresh_token = tokens::new_refresh_secret()?;
    let secret = tokens::decode_refresh(&refresh_token).ok_or_else(|| ApiError::unavailable("token generator"))?;
    let session = NewSession {
        user_id: user.id,
        family_id: family,
        token: NewToken {
            id: Uuid::now_v7(),
            hash: tokens::refresh_hash(&secret),
            expires_at: OffsetDateTime::now_utc() + app.config.tokens.refresh_ttl,
        },
        ip_address: client.ip_string(),
        user_agent: client.user_agent.clone(),
        password_version,
    };
    if app.services.users.start_session(session).await? == StartOutcome::CredentialsChanged {
        return Err(bad_credentials());
    }
    let (access_token, expires_in) = tokens::issue_access(app, &user, family).await?;
    app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::success }).inc();
    Ok(Issued { access_token, expires_in, refresh_token })
}

/// Step 3: the account's lockout gate and per-account rate limit, for every check of a password
/// (a login, and the old password of a password change). `account` is the user id of a known
/// user, so both share one lockout.
pub(crate) async fn gate(app: &App, account: &str, user_id: Option<Uuid>, client: &Client) -> Result<(), ApiError> {
    let limits = &app.config.limits;
    if !limits.enabled {
        return Ok(());
    }
    let policy =
        LockoutPolicy { threshold: limits.lockout_threshold, base: limits.lockout_base, max: limits.lockout_max };
    if let LoginGate::Locked { retry_after, started_now } =
        app.services.limiter.begin_login(account.to_string(), policy).await?
    {
        app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::locked }).inc();
        if started_now {
            app.metrics.lockouts.inc();
            let detail = serde_json::json!({ "retry_after_secs": retry_after.as_secs() });
            app.services.users.record_event("lockout", user_id, None, client.ip_string(), detail).await?;
        }
        return Err(ApiError::RateLimited { retry_after });
    }
    let per_account = limits.login_account;
    let decision =
        app.services.limiter.hit(format!("login_account:{account}"), per_account.limit, per_account.window).await?;
    if !decision.allowed {
        app.metrics.rate_limited.get_or_create(&crate::metrics::ClassLabels { class: "login_account" }).inc();
        return Err(ApiError::RateLimited { retry_after: decision.retry_after });
    }
    Ok(())
}
