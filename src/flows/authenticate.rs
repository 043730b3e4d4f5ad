//! Who is calling: the one verifier of access tokens. [`verify`] is used by every protected route
//! and `me`, [`verdict`] by introspection and userinfo, the claims check alone by logout and
//! revocation. Which of these a route needs is decided in one place, [`crate::routes::access`].
//!
//! 1. `KeyManagerHandle::verify` takes the current snapshot (503 while the KeyManager is down) and
//!    calls `KeySet::verify` inline: the header must name a `kid` of a published key; the header's
//!    `alg` must equal the algorithm recorded for that key, and the validator accepts that one
//!    algorithm only (so `alg: none`, HS256 key confusion and RSA/EC swaps fail before any
//!    signature check); `typ` must be `at+jwt`; the signature must verify; `exp`, `nbf`, `iat`,
//!    `iss`, `aud`, `sub` are required, `iss` and `aud` must match, `exp` and `nbf` are checked
//!    with `CLOCK_SKEW` of leeway; the claims must decode into `AccessClaims` (so `type: "access"`,
//!    a `jti` that is a UUID, ...). A token that passed is remembered by that snapshot (keyed by
//!    its exact text, the rules and the claims type, at most `TOKEN_CACHE_SIZE` tokens, the least
//!    useful evicted one by one), so a client that reuses its token pays for one signature check
//!    per snapshot; on every hit `exp` and `nbf` are checked again against the clock. A key change
//!    builds a new snapshot with an empty cache, so an emergency revoke is never served from it.
//!    Revocation is never cached: step 3 runs on every request.
//! 2. The claims must have a UUID `sub`, `username`, `email`, `roles` and a UUID `sid`; a token
//!    without a session is refused.
//! 3. One `RedisHandle::check_tokens` reads, in one pipelined round trip, the blacklist
//!    entry `{u:<user id>}bl:<jti>`, the user's not-before marker `{u:<user id>}nb` and the session
//!    marker `{u:<user id>}rs:<sid>` (one `MGET`, one hash slot) and the **authorization epoch**
//!    `{authz}epoch`. A blacklisted token, a revoked session, or a
//!    token issued (the time inside its UUIDv7 `jti`) no later than the not-before marker is
//!    refused: 401, or `{"active": false}` for introspection. Redis unreachable is 503.
//! 4. A token that names a `client_id` (issued through `/oauth2/token`) must belong to a client
//!    that exists now, is `first_party` and is registered for `JWT_AUDIENCE`
//!    (`meant_for_the_api`, reading the registration from `ClientCache` under the
//!    same epoch): a third-party app's token never acts on the API (401).
//! 5. The user's current standing — exists, active, which roles — must say active (401
//!    otherwise); the principal the route sees carries the current roles, and the dispatcher checks
//!    them against the route's access before the handler runs.
//!
//! The standing is the user's current roles, active flag, username, email and whether that email
//! is verified (what every answer about a token reports, never the token's own claims). Each instance caches it
//! ([`crate::authz`], at most `AUTHZ_CACHE_SIZE` users, the least useful evicted one at a time),
//! filed under the epoch that was read before PostgreSQL was asked; an entry is used only while
//! Redis still holds the same epoch, and for at most `AUTHZ_CACHE_TTL`. Every change of roles or
//! standing made through the API (assign, remove, rename or delete a role, rename or delete a user,
//! verify or change an address)
//! commits in PostgreSQL and *then* replaces the epoch (the Database handle runs `BumpAuthzEpoch`
//! after every operation whose `changes_standing` says so, before it answers), so whatever any
//! instance cached before the commit is filed under an epoch that no longer exists: the change
//! holds on the very next request everywhere. If Redis holds no epoch (first start, or it lost its
//! data), the Redis actor starts one with `SET NX` and reads back whichever value holds.
//! Introspection puts its caller's token, the subject token and the epoch in one pipelined round
//! trip, and checks the subject's standing the same way, so cached users cost one Redis round trip
//! and no PostgreSQL query.

use std::sync::Arc;

use auth_actors::keys::VerifyRules;
use auth_actors::redis::revocation::{TokenRef, TokenState};
use uuid::Uuid;

use super::error::{FlowError, Rejection};
use super::tokens::AccessClaims;
use crate::app::App;
use crate::authz::{Cached, Standing};
use crate::oauth::client_auth;

/// The caller behind a valid access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    /// The session (refresh-token family) the token was issued to.
    pub session: Uuid,
    /// The user's roles now (once checked; before that, the token's claim).
    pub roles: Vec<String>,
    /// Every claim of the token, as verified.
    pub claims: Arc<AccessClaims>,
    /// The user's standing as checked (shared with the cache), for its current names.
    standing: Option<Cached<Standing>>,
}

impl Principal {
    /// The user's username now (once checked; before that, the token's claim).
    pub fn username(&self) -> &str {
        match &self.standing {
            Some(s) => &s.username,
            None => self.claims.username.as_deref().unwrap_or_default(),
        }
    }

    /// The user's email now (once checked; before that, the token's claim).
    pub fn email(&self) -> &str {
        match &self.standing {
            Some(s) => &s.email,
            None => self.claims.email.as_deref().unwrap_or_default(),
        }
    }

    /// Whether the user's address is verified now (once checked; before that, `false`: an
    /// access token carries no such claim).
    pub fn email_verified(&self) -> bool {
        self.standing.as_ref().is_some_and(|s| s.email_verified)
    }

    pub fn jti(&self) -> Uuid {
        self.claims.jti
    }

    fn token(&self) -> TokenRef {
        TokenRef::User { user: self.user_id, jti: self.claims.jti, session: self.session }
    }
}

/// The verdict on a token someone else presented (introspection's subject).
#[derive(Debug)]
pub enum Verdict {
    Active(Subject),
    Inactive(Rejection),
}

/// An access token of this issuer, for any audience: issued to a user (then with its user's
/// current roles once checked), or to an OAuth client itself.
#[derive(Debug)]
pub enum Subject {
    User(Principal),
    Client(Arc<AccessClaims>),
}

impl Subject {
    pub fn claims(&self) -> &AccessClaims {
        match self {
            Subject::User(p) => &p.claims,
            Subject::Client(c) => c,
        }
    }

    fn token(&self) -> TokenRef {
        match self {
            Subject::User(p) => p.token(),
            Subject::Client(c) => TokenRef::Client { client: c.sub.clone(), jti: c.jti },
        }
    }
}

pub fn rules(app: &App) -> VerifyRules {
    let t = &app.config.tokens;
    VerifyRules { typ: "at+jwt", issuer: t.issuer.clone(), audience: Some(t.audience.clone()), leeway: t.clock_skew }
}

fn verified(app: &App, token: &str, rules: &VerifyRules) -> Result<Arc<AccessClaims>, FlowError> {
    match app.services.keys.verify::<AccessClaims>(token, rules) {
        Ok(c) => Ok(c),
        Err(auth_actors::key_manager::SignError::Call(e)) => Err(e.into()),
        Err(_) => Err(FlowError::Token(Rejection::Invalid)),
    }
}

/// Checks signature and claims only (no Redis): a token that passes is ours, current, for this
/// service's audience, and a user's.
/// A refused token is [`FlowError::Token`]; anything else is an outage.
pub fn verify_claims(app: &App, token: &str) -> Result<Principal, FlowError> {
    principal_from(verified(app, token, &rules(app))?).ok_or(FlowError::Token(Rejection::Invalid))
}

/// Checks signature and claims of a token for any audience of this issuer (introspection's
/// subject; revocation): a user's token, or one issued to a client itself.
pub fn subject_claims(app: &App, token: &str) -> Result<Subject, FlowError> {
    let rules = VerifyRules { audience: None, ..rules(app) };
    let claims = verified(app, token, &rules)?;
    if claims.sid.is_some() {
        return principal_from(claims).map(Subject::User).ok_or(FlowError::Token(Rejection::Invalid));
    }
    match &claims.client_id {
        Some(client) if *client == claims.sub && claims.username.is_none() => Ok(Subject::Client(claims)),
        _ => Err(FlowError::Token(Rejection::Invalid)),
    }
}

fn principal_from(claims: Arc<AccessClaims>) -> Option<Principal> {
    // A token that names no session could not be revoked with its session: refuse it. The
    // user fields are in every token issued to a user.
    claims.username.as_ref()?;
    claims.email.as_ref()?;
    let (user_id, session, roles) = (claims.sub.parse().ok()?, claims.sid?, claims.roles.clone()?);
    Some(Principal { user_id, session, roles, claims, standing: None })
}

/// Whether Redis says `principal`'s token is revoked: blacklisted, its session revoked, or
/// issued no later than its user's logout-all marker (a token minted in the marker's own
/// millisecond is refused too).
fn revoked(claims: &AccessClaims, state: &TokenState) -> bool {
    if state.blacklisted || state.session_revoked {
        return true;
    }
    state.not_before_ms.is_some_and(|marker| claims.issued_ms().unwrap_or(i64::MIN) <= marker)
}

/// Full verification of a token: claims, revocation markers and the user's current standing.
pub async fn verify(app: &App, token: &str) -> Result<Principal, FlowError> {
    let principal = verify_claims(app, token)?;
    Ok(check(app, principal, None).await?.0)
}

/// The principal of a request's Bearer token: refused (401) when missing, invalid or revoked;
/// 503 when a dependency is down.
pub async fn authenticate(app: &App, bearer: Option<&str>) -> Result<Principal, FlowError> {
    verify(app, bearer.ok_or(FlowError::Token(Rejection::Missing))?).await
}

/// Checks a caller's token (from [`verify_claims`]) and a subject token together, in one Redis
/// round trip: the caller as [`verify`] checks it, the subject as [`verdict`] does, with its
/// user's current roles (introspection by a Bearer caller).
pub async fn verify_with_subject(
    app: &App,
    caller: Principal,
    subject: &str,
) -> Result<(Principal, Verdict), FlowError> {
    let subject = match subject_claims(app, subject) {
        Ok(s) => Ok(s),
        Err(FlowError::Token(rejection)) => Err(rejection),
        Err(outage) => return Err(outage),
    };
    check(app, caller, Some(subject)).await
}

/// The verdict on `token` for a caller that is not a Bearer (an authenticated client): its
/// claims, its revocation markers and its standing now.
pub async fn verdict(app: &App, token: &str) -> Result<Verdict, FlowError> {
    let subject = match subject_claims(app, token) {
        Ok(s) => s,
        Err(FlowError::Token(rejection)) => return Ok(Verdict::Inactive(rejection)),
        Err(outage) => return Err(outage),
    };
    let check = app.services.redis.check_tokens(&[subject.token()], true).await?;
    let state = check.states.first().ok_or(FlowError::Unavailable(super::error::Dependency::Redis))?;
    subject_standing(app, subject, state, check.authz_epoch.as_deref(), None).await
}

/// A verified subject's verdict, given its revocation markers: revoked, or issued to a user who
/// is gone or inactive, or to a client that is gone, is inactive. `caller` lends its standing to
/// a subject of the same user.
async fn subject_standing(
    app: &App,
    subject: Subject,
    state: &TokenState,
    epoch: Option<&str>,
    caller: Option<&Principal>,
) -> Result<Verdict, FlowError> {
    if revoked(subject.claims(), state) {
        return Ok(Verdict::Inactive(Rejection::Revoked));
    }
    if let Some(client) = &subject.claims().client_id
        && client_auth::client_entry(app, client, epoch).await?.is_none()
    {
        return Ok(Verdict::Inactive(Rejection::Revoked));
    }
    Ok(match subject {
        Subject::User(mut p) => match caller {
            Some(c) if c.user_id == p.user_id => {
                p.roles.clone_from(&c.roles);
                p.standing.clone_from(&c.standing);
                Verdict::Active(Subject::User(p))
            }
            _ if current_standing(app, &mut p, epoch).await? => Verdict::Active(Subject::User(p)),
            _ => Verdict::Inactive(Rejection::Revoked),
        },
        client @ Subject::Client(_) => Verdict::Active(client),
    })
}

/// Checks the caller's token (and the subject's, if its claims were valid) and reads the
/// authorization epoch in one round trip; then each one's standing, from the cache or the
/// database. A caller that is revoked, gone or inactive is 401; a subject that is, inactive.
async fn check(
    app: &App,
    mut caller: Principal,
    subject: Option<Result<Subject, Rejection>>,
) -> Result<(Principal, Verdict), FlowError> {
    let mut tokens = vec![caller.token()];
    if let Some(Ok(s)) = &subject {
        tokens.push(s.token());
    }
    let check = app.services.redis.check_tokens(&tokens, true).await?;
    let (Some(caller_state), subject_state) = (check.states.first(), check.states.get(1)) else {
        return Err(FlowError::Unavailable(super::error::Dependency::Redis));
    };
    if revoked(&caller.claims, caller_state) {
        return Err(FlowError::Token(Rejection::Revoked));
    }
    let epoch = check.authz_epoch.as_deref();
    if !meant_for_the_api(app, &caller.claims, epoch).await? {
        return Err(FlowError::Token(Rejection::Invalid));
    }
    if !current_standing(app, &mut caller, epoch).await? {
        return Err(FlowError::Token(Rejection::Revoked));
    }
    let subject = match (subject, subject_state) {
        (Some(Ok(s)), Some(state)) => subject_standing(app, s, state, epoch, Some(&caller)).await?,
        (Some(Err(rejection)), _) => Verdict::Inactive(rejection),
        (Some(Ok(_)), None) => Verdict::Inactive(Rejection::Revoked),
        (None, _) => Verdict::Inactive(Rejection::Missing),
    };
    Ok((caller, subject))
}

/// Whether a token that passed the audience check may act on this service's own API: one from
/// `/api/v1/auth/*` (no `client_id`), or one issued through `/oauth2/token` to a client that
/// exists now, is `first_party` and is registered for `JWT_AUDIENCE` (SPEC §7, "Who may use a
/// token where"). Registration allows that audience to first-party clients only and tokens of
/// other clients carry their own audience, so this re-checks what the signature already says
/// against the registration as it is now: a client demoted, re-pointed or deleted since the
/// token was issued loses the API at once (its registry change replaced the epoch).
async fn meant_for_the_api(app: &App, claims: &AccessClaims, epoch: Option<&str>) -> Result<bool, FlowError> {
    let Some(client) = &claims.client_id else { return Ok(true) };
    let Some(entry) = client_auth::client_entry(app, client, epoch).await? else { return Ok(false) };
    let m = entry.metadata();
    Ok(m.first_party && m.audience.as_deref() == Some(app.config.tokens.audience.as_str()))
}

/// Gives `principal` its user's current roles and names and tells whether the user exists and
/// is active: from the cache filed under the current epoch, or read from PostgreSQL and cached.
/// Without an epoch (Redis had none), the database is read and nothing is cached. A cache hit
/// costs no allocation when the roles are those of the token (the names are shared with the
/// cache). A rename replaces the epoch like a role change, so no instance reports a name the
/// account no longer holds.
async fn current_standing(app: &App, principal: &mut Principal, epoch: Option<&str>) -> Result<bool, FlowError> {
    let user_id = principal.user_id;
    let standing = match epoch.and_then(|epoch| app.authz.get(&user_id, epoch)) {
        Some(cached) => {
            if cached.roles != principal.roles {
                principal.roles.clone_from(&cached.roles);
            }
            cached
        }
        None => {
            let standing = match app.services.db.run(auth_actors::db::users::Get { id: user_id }).await? {
                Some(u) => Standing {
                    active: u.is_active,
                    roles: u.roles,
                    username: u.username,
                    email: u.email,
                    email_verified: u.email_verified,
                },
                None => Standing {
                    active: false,
                    roles: Vec::new(),
                    username: String::new(),
                    email: String::new(),
                    email_verified: false,
                },
            };
            principal.roles.clone_from(&standing.roles);
            app.authz.put(user_id, epoch.map(str::to_string), standing)
        }
    };
    let active = standing.active;
    principal.standing = Some(standing);
    Ok(active)
}
