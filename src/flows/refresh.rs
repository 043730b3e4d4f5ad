//! Refresh: rotate the presented refresh token and issue a new access token. The rotation
//! ([`rotate`]) is the one the OAuth `refresh_token` grant uses too.
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
use auth_actors::db::users::UserRecord;
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::FlowError;
use super::tokens::{self, Issued};
use crate::app::App;
use crate::domain::Peer;
use crate::metrics::{Outcome, OutcomeLabels};
use crate::secret::Secret;

/// `POST /api/v1/auth/refresh`: the rotation, counted, and an access token for the session.
pub async fn refresh(app: &App, presented: &str, peer: &Peer) -> Result<Issued, FlowError> {
    let count = |outcome| app.metrics.refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
    let Some(parent) = Secret::parse(presented) else {
        count(Outcome::invalid);
        return Err(FlowError::RefreshInvalid);
    };
    let rotated = match rotate(app, &parent, peer, None, None).await? {
        Rotation::Rotated(r) => r,
        Rotation::Reused => {
            count(Outcome::reuse_detected);
            return Err(FlowError::RefreshReused);
        }
        Rotation::Invalid | Rotation::ScopeExceeded => {
            count(Outcome::invalid);
            return Err(FlowError::RefreshInvalid);
        }
    };
    count(if rotated.retried { Outcome::retried } else { Outcome::rotated });
    let Some(refresh_token) = rotated.refresh_token else { return Err(FlowError::RefreshInvalid) };
    if !rotated.user.is_active {
        return Err(FlowError::RefreshInvalid);
    }
    let (access_token, expires_in) = tokens::issue_access(app, &rotated.user, rotated.family, None).await?;
    Ok(Issued { access_token, expires_in, refresh_token })
}

/// What a rotation did.
pub enum Rotation {
    Rotated(Rotated),
    /// The token was used before: its session is revoked and its access tokens fenced off.
    Reused,
    /// The scope asked for is wider than the session's; nothing was written.
    ScopeExceeded,
    /// Unknown, expired or revoked.
    Invalid,
}

/// A rotated session.
pub struct Rotated {
    /// The session's user as they are now (with current roles; may be inactive).
    pub user: UserRecord,
    pub family: Uuid,
    /// The session's scope (sessions of OAuth clients).
    pub scope: Option<String>,
    /// The successor token; `None` if a retry's sealed successor could not be opened.
    pub refresh_token: Option<String>,
    /// Whether another request rotated this token moments ago and this one got its successor.
    pub retried: bool,
}

/// Steps 1 and 2 for the presented token `parent`, shared by `/api/v1/auth/refresh` and the
/// OAuth `refresh_token` grant: `client` is the OAuth client the session must be bound to (none
/// for a first-party session), `scope` a narrower scope asked for.
pub async fn rotate(
    app: &App,
    parent: &Secret,
    peer: &Peer,
    client: Option<&str>,
    scope: Option<Vec<String>>,
) -> Result<Rotation, FlowError> {
    let candidate = Secret::generate()?;
    let t = &app.config.tokens;
    let successor = NewToken {
        id: Uuid::now_v7(),
        hash: candidate.digest(),
        expires_at: OffsetDateTime::now_utc() + t.refresh_ttl,
    };
    let rules =
        RotationRules { grace: t.reuse_grace, grace_retries: t.grace_retries, max_lifetime: t.session_max_lifetime };
    let rotate = Rotate {
        presented: parent.digest(),
        successor,
        sealed: tokens::seal(parent, &candidate),
        rules,
        ip: peer.ip_string(),
        client_id: client.map(str::to_string),
        scope,
    };
    Ok(match app.services.users.run(rotate).await? {
        RotateOutcome::Rotated { user, family_id, scope } => {
            let refresh_token = Some(candidate.encode());
            Rotation::Rotated(Rotated { user, family: family_id, scope, refresh_token, retried: false })
        }
        RotateOutcome::Retried { user, family_id, scope, sealed } => {
            let refresh_token = tokens::unseal(parent, &sealed);
            Rotation::Rotated(Rotated { user, family: family_id, scope, refresh_token, retried: true })
        }
        RotateOutcome::ReuseDetected { user_id, family_id } => {
            tracing::warn!(user_id = %user_id, family_id = %family_id, "refresh token reuse detected; session revoked");
            super::logout::fence_sessions(app, user_id, vec![family_id]).await?;
            Rotation::Reused
        }
        RotateOutcome::ScopeExceeded => Rotation::ScopeExceeded,
        RotateOutcome::Invalid => Rotation::Invalid,
    })
}
