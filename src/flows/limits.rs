//! Per-IP rate limits by route class, applied by the dispatcher before a handler runs. Health,
//! readiness, metrics and the public key documents are exempt: they must answer under load.
//! A flow may spend a second class's budget when what a request asks, not its route, makes it
//! that kind of request ([`spend`]): a rename is a username probe, like a signup.

use auth_actors::keyspace::LimitClass;
use auth_actors::redis::rate::Decision;

use super::error::FlowError;
use crate::app::App;
use crate::config::RateLimit;
use crate::metrics::ClassLabels;

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
