//! Per-IP rate limits by route class, applied by the router before a handler runs. Health,
//! readiness, metrics and the public key documents are exempt: they must answer under load.

use auth_actors::rate_limiter::Decision;

use crate::app::App;
use crate::config::RateLimit;
use crate::http::ApiError;
use crate::metrics::ClassLabels;

/// Which limit a route counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Exempt,
    Login,
    Signup,
    Refresh,
    Default,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Exempt => "exempt",
            Class::Login => "login",
            Class::Signup => "signup",
            Class::Refresh => "refresh",
            Class::Default => "default",
        }
    }

    fn limit(self, app: &App) -> Option<RateLimit> {
        let l = &app.config.limits;
        match self {
            Class::Exempt => None,
            Class::Login => Some(l.login),
            Class::Signup => Some(l.signup),
            Class::Refresh => Some(l.refresh),
            Class::Default => Some(l.default),
        }
    }
}

/// Counts the request against its class's limit for the client's IP. `None` when the route is
/// exempt or limiting is disabled; a decision (allowed or not) otherwise; 503 if Redis is down,
/// since limits fail closed.
pub async fn check(app: &App, class: Class, ip: std::net::IpAddr) -> Result<Option<Decision>, ApiError> {
    if !app.config.limits.enabled {
        return Ok(None);
    }
    let Some(limit) = class.limit(app) else { return Ok(None) };
    let decision = app.services.limiter.hit(format!("{}:ip:{ip}", class.name()), limit.limit, limit.window).await?;
    if !decision.allowed {
        app.metrics.rate_limited.get_or_create(&ClassLabels { class: class.name() }).inc();
    }
    Ok(Some(decision))
}
