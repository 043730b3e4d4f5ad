//! Refresh: rotate the presented refresh token and issue a new access token. The rotation
//! ([`rotate`], steps 2 to 6) is the one the OAuth `refresh_token` grant uses too, with the client
//! the session is bound to in its compare-and-swap.
//!
//! `POST /api/v1/auth/refresh` → `crate::routes::auth::refresh` → [`refresh`].
//!
//! 1. **Take the token.** With `Content-Type: application/json` and a `refresh_token` field, the
//!    token comes from the body (and the successor is returned in the body too). Otherwise it
//!    comes from the `refresh_token` cookie, after the `Origin` check: a request carrying an
//!    `Origin` header must come from the service's own origin or `ALLOWED_ORIGINS` (403
//!    otherwise). No token is 401.
//! 2. **Decode and hash.** Anything but 32 base64url bytes is 401
//!    (`auth_refreshes_total{outcome="invalid"}`). The flow computes `SHA-256(secret)`, the only
//!    form the database knows.
//! 3. **Seal a candidate successor under the presented secret.** It makes a new 32-byte secret,
//!    its id (UUIDv7), digest and expiry (`REFRESH_TOKEN_TTL` from now), and
//!    `sealed = successor XOR SHA-256(tag ‖ presented secret)`.
//! 4. **One-statement compare-and-swap.** The Database runs the operation `db::sessions::Rotate`. Its
//!    first statement is one CTE, one round trip and one implicit transaction: `UPDATE
//!    refresh_tokens SET rotated_at = now(), successor_sealed = $sealed WHERE token_hash = $hash AND
//!    rotated_at IS NULL AND` (token and family not revoked, token not expired); insert the
//!    successor with `parent_id` set; touch the family (`last_used_at`, new `expires_at`); and
//!    return the family id and the user with its current roles. The family must be younger than
//!    `SESSION_MAX_LIFETIME`, and the successor and family expire at the sooner of
//!    `REFRESH_TOKEN_TTL` from now and the session's absolute end. Exactly one concurrent caller
//!    wins this `UPDATE`; the others wait on the row lock and then match nothing. A row back is
//!    `Rotated`: the candidate is the successor.
//! 5. **No row: look at the token** (a second transaction). Unknown, revoked, or expired without
//!    having been rotated is `Invalid` (401). Rotated less than `REFRESH_REUSE_GRACE` ago with a
//!    live successor is `Retried` — if the token's `grace_retries` count, raised by a conditional
//!    `UPDATE ... WHERE grace_retries < REFRESH_GRACE_RETRIES`, was still under the bound; a
//!    `refresh_retried` event is written in the same transaction: the caller gets the winner's
//!    sealed successor and **unseals it with the secret it presented**, so every retry and every
//!    concurrent loser receives the same successor and the family never forks. Rotated before the
//!    window, or retried once too often, is `ReuseDetected`: the family and all its tokens are
//!    revoked and a `refresh_reuse_detected` security event is written **in the same
//!    transaction**.
//! 6. **Fence on reuse.** On `ReuseDetected` the flow logs a warning and calls
//!    `logout::fence_sessions`, which sets the Redis session marker `{u:<user id>}rs:<session id>`
//!    (for `ACCESS_TOKEN_TTL + 2 × CLOCK_SKEW`) through the `RevokeSessions` command, so the access
//!    tokens already issued to that session are refused too; the answer is 401.
//! 7. **Sign.** With the user the rotation returned (401 if it is no longer active), the access
//!    token for that session is signed as in login step 8, and the route answers as login does,
//!    with the successor in the cookie. A 401 from the flow also clears the cookie. The outcome
//!    is counted in `auth_refreshes_total` (`rotated`, `retried`, `reuse_detected`, `invalid`).

use auth_actors::db::sessions::{self, NewToken, RotateOutcome, RotationRules};
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
    let (access_token, expires_in) =
        tokens::issue_access(app, &rotated.user, rotated.family, &rotated.amr, None).await?;
    Ok(Issued { access_token, expires_in, refresh_token })
}

/// What a rotation did.
pub enum Rotation {
    Rotated(Box<Rotated>),
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
    /// How the session's user signed in (RFC 8176).
    pub amr: Vec<String>,
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
    let rotate = sessions::Rotate {
        presented: parent.digest(),
        successor,
        sealed: tokens::seal(parent, &candidate),
        rules,
        ip: peer.ip_string(),
        client_id: client.map(str::to_string),
        scope,
    };
    Ok(match app.services.db.run(rotate).await? {
        RotateOutcome::Rotated { user, family_id, scope, amr } => {
            let refresh_token = Some(candidate.encode());
            Rotation::Rotated(Box::new(Rotated { user, family: family_id, scope, amr, refresh_token, retried: false }))
        }
        RotateOutcome::Retried { user, family_id, scope, amr, sealed } => {
            let refresh_token = tokens::unseal(parent, &sealed);
            Rotation::Rotated(Box::new(Rotated { user, family: family_id, scope, amr, refresh_token, retried: true }))
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
