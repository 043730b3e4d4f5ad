//! Per-IP rate limits by route class, applied by the dispatcher before a handler runs. Health,
//! readiness, metrics and the public key documents are exempt: they must answer under load.
//! A flow may spend a second class's budget when what a request asks, not its route, makes it
//! that kind of request ([`spend`]): a rename is a username probe, like a signup.

use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::keyspace::{Account, LimitClass, Subject};
use auth_actors::redis::lockout::{self, LockoutPolicy, LoginGate};
use auth_actors::redis::rate;
use auth_actors::redis::rate::Decision;

use super::error::FlowError;
use crate::app::App;
use crate::config::RateLimit;
use crate::domain::Peer;
use crate::metrics::{ClassLabels, Outcome, OutcomeLabels};

/// Which limit a route counts against: none, or one of the per-IP classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Exempt,
    Limited(LimitClass),
}

/// The configured limit of a class.
pub fn limit(app: &App, class: LimitClass) -> RateLimit {
    let l = &app.config.limits;
    match class {
        LimitClass::Login => l.login,
        LimitClass::LoginAccount => l.login_account,
        LimitClass::Signup => l.signup,
        LimitClass::Refresh => l.refresh,
        LimitClass::Default => l.default,
        LimitClass::Token => l.token,
        LimitClass::Client => l.client,
        LimitClass::Recovery => app.config.accounts.recovery,
        LimitClass::RecoveryAccount => app.config.accounts.recovery_account,
    }
}

/// Counts a denial in the rate-limit metric.
pub fn denied(app: &App, class: LimitClass) {
    app.metrics.rate_limited.get_or_create(&ClassLabels { class: class.as_str() }).inc();
}

/// Counts the request against its class's limit for the client's IP. `None` when the route is
/// exempt or limiting is disabled; a decision (allowed or not) otherwise; 503 if Redis is down,
/// since limits fail closed.
pub async fn check(app: &App, class: Class, ip: std::net::IpAddr) -> Result<Option<Decision>, FlowError> {
    let Class::Limited(class) = class else { return Ok(None) };
    if !app.config.limits.enabled {
        return Ok(None);
    }
    let RateLimit { limit, window } = limit(app, class);
    let decision = app.services.redis.hit_ip(class, ip, limit, window).await?;
    if !decision.allowed {
        denied(app, class);
    }
    Ok(Some(decision))
}

/// Counts one request of `class` for the client's IP from inside a flow, on top of its route's
/// own class: `Throttled` once that budget is spent (and 503 if Redis is down, as every limit).
pub async fn spend(app: &App, class: LimitClass, ip: std::net::IpAddr) -> Result<(), FlowError> {
    match check(app, Class::Limited(class), ip).await? {
        Some(decision) if !decision.allowed => Err(FlowError::Throttled { retry_after: decision.retry_after }),
        _ => Ok(()),
    }
}

/// Counts one request of `class` against the budget of `account` (from any IP). `Ok(false)`
/// once the budget is spent (and limiting on); the caller decides what a refusal looks like,
/// since a per-account answer must not tell a stranger that the account exists.
pub async fn spend_for_account(
    app: &App,
    class: LimitClass,
    account: auth_actors::keyspace::Account,
) -> Result<bool, FlowError> {
    if !app.config.limits.enabled {
        return Ok(true);
    }
    let RateLimit { limit: count, window } = limit(app, class);
    let hit = auth_actors::redis::rate::Hit {
        class,
        subject: auth_actors::keyspace::Subject::Account(account),
        limit: count,
        window,
    };
    let decision = app.services.redis.run(hit).await?;
    if !decision.allowed {
        denied(app, class);
    }
    Ok(decision.allowed)
}

/// The account's lockout gate and per-account rate limit, for every check of a password (step 3
/// of a login, the old password of a password or email change). A known user's account is its id, so
/// both share one lockout.
pub(crate) async fn gate(app: &App, account: &Account, peer: &Peer) -> Result<(), FlowError> {
    let limits = &app.config.limits;
    if !limits.enabled {
        return Ok(());
    }
    let policy =
        LockoutPolicy { threshold: limits.lockout_threshold, base: limits.lockout_base, max: limits.lockout_max };
    let redis = &app.services.redis;
    if let LoginGate::Locked { retry_after, started_now } =
        redis.run(lockout::BeginLogin { account: account.clone(), policy }).await?
    {
        app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::locked }).inc();
        if started_now {
            app.metrics.lockouts.inc();
            let user = match account {
                Account::User(id) => Some(*id),
                Account::Unknown(_) => None,
            };
            let event = SecurityEvent::Lockout { user, retry_after_secs: retry_after.as_secs() };
            app.services.db.run(events::Record { event, ip: peer.ip_string() }).await?;
        }
        return Err(FlowError::Throttled { retry_after });
    }
    let per_account = limits.login_account;
    let hit = rate::Hit {
        class: LimitClass::LoginAccount,
        subject: Subject::Account(account.clone()),
        limit: per_account.limit,
        window: per_account.window,
    };
    let decision = redis.run(hit).await?;
    if !decision.allowed {
        denied(app, LimitClass::LoginAccount);
        return Err(FlowError::Throttled { retry_after: decision.retry_after });
    }
    Ok(())
}
