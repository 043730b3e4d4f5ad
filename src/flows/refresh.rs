//! Refresh: rotate the presented refresh token and issue a new access token.
//!
//! 1. Decode the presented token and hash it; make a candidate successor and seal it under the
//!    presented secret.
//! 2. Ask the UserStore to rotate (one compare-and-swap in PostgreSQL):
//!    - `Rotated`: our candidate is the successor;
//!    - `Retried`: another request rotated this token within the grace window; unseal its
//!      successor, so every retry gets the same one and the family never forks. Each retry
//!      is counted on the token and recorded as a `refresh_retried` event;
//!    - `ReuseDetected`: the token was rotated before the window, or was retried more than
//!      `REFRESH_GRACE_RETRIES` times; the family is revoked (and the event recorded) in the
//!      same transaction: 401;
//!    - `Invalid`: 401.
//! 3. With the user the rotation returned (active, current roles), sign the access token for
//!    that session.

use auth_actors::db::sessions::{NewToken, Rotate, RotateOutcome, RotationRules};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Client;
use super::error::{Dependency, FlowError};
use super::tokens::{self, Issued};
use crate::app::App;
use crate::metrics::{Outcome, OutcomeLabels};

pub async fn refresh(app: &App, presented: &str, client: &Client) -> Result<Issued, FlowError> {
    let count = |outcome| app.metrics.refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
    let Some(parent) = tokens::decode_refresh(presented) else {
        count(Outcome::invalid);
        return Err(FlowError::RefreshInvalid);
    };
    let candidate = tokens::new_refresh_secret()?;
    let candidate_secret = tokens::decode_refresh(&candidate).ok_or(FlowError::Unavailable(Dependency::Randomness))?;
    let successor = NewToken {
        id: Uuid::now_v7(),
        hash: tokens::refresh_hash(&candidate_secret),
        expires_at: OffsetDateTime::now_utc() + app.config.tokens.refresh_ttl,
    };
    let sealed = tokens::seal(&parent, &candidate_secret);
    let t = &app.config.tokens;
    let rules =
        RotationRules { grace: t.reuse_grace, grace_retries: t.grace_retries, max_lifetime: t.session_max_lifetime };
    let rotate = Rotate {
        presented: tokens::refresh_hash(&parent),
        successor,
        sealed,
        rules,
        ip: client.ip_string(),
        client_id: None,
        scope: None,
    };
    let (user, family, refresh_token) = match app.services.users.run(rotate).await? {
        RotateOutcome::Rotated { user, family_id, .. } => {
            count(Outcome::rotated);
            (user, family_id, candidate)
        }
        RotateOutcome::Retried { user, family_id, sealed, .. } => {
            count(Outcome::retried);
            (user, family_id, tokens::unseal(&parent, &sealed).ok_or(FlowError::RefreshInvalid)?)
        }
        RotateOutcome::ReuseDetected { user_id, family_id } => {
            count(Outcome::reuse_detected);
            tracing::warn!(user_id = %user_id, family_id = %family_id, "refresh token reuse detected; session revoked");
            super::logout::fence_sessions(app, user_id, vec![family_id]).await?;
            return Err(FlowError::RefreshReused);
        }
        RotateOutcome::Invalid | RotateOutcome::ScopeExceeded => {
            count(Outcome::invalid);
            return Err(FlowError::RefreshInvalid);
        }
    };
    if !user.is_active {
        return Err(FlowError::RefreshInvalid);
    }
    let (access_token, expires_in) = tokens::issue_access(app, &user, family, None).await?;
    Ok(Issued { access_token, expires_in, refresh_token })
}
