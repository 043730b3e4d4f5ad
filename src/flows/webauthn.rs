//! Passkeys (WebAuthn, with webauthn-rs): registration, sign-in as a second factor, and
//! passwordless sign-in with discoverable credentials.
//!
//! **The relying party.** One `Webauthn` is built at startup ([`relying_party`]) from
//! `PUBLIC_URL`: the RP ID is its host, the only origin accepted is its `scheme://host[:port]`,
//! the RP name is the service's name. A browser binds every credential to the RP ID and signs
//! the origin it talked to, so an assertion made for another site (a phishing page) never
//! verifies here. A `PUBLIC_URL` whose host is an IP address cannot be an RP ID: passkeys are
//! then off (a warning at startup) and every passkey route answers 503 `passkeys_unavailable`.
//!
//! **Ceremonies.** Every start stores webauthn-rs's server state (the challenge, the credentials
//! allowed) in `webauthn_ceremonies` (`db::webauthn::StartCeremony`), alive
//! [`CEREMONY_TTL`], bound to its kind (`register`, `authenticate`, `discoverable`) and its user
//! (none for passwordless), and answers its id with the options for
//! `navigator.credentials.create/get`. Every finish first parses the browser's credential JSON
//! ([`parse_registration`], [`parse_assertion`]: malformed is 400 `invalid_credential`, before
//! anything is spent), then takes the ceremony (`db::webauthn::TakeCeremony`, one
//! `DELETE … RETURNING` matching id, kind, user and expiry: single use, even under parallel
//! finishes; unknown, expired, used, or another user's or kind's is 400 `invalid_ceremony`), then
//! verifies with webauthn-rs (challenge, origin, RP ID hash, user presence and verification,
//! signature, counter) on a blocking thread (a passkey's key may be RSA; attestation statements
//! are parsed there too).
//!
//! 1. **Registration** ([`register_start`], [`register_finish`], Bearer): the options exclude
//!    the user's passkeys and ask for a discoverable credential (`residentKey: "preferred"`), so
//!    that it can sign in without a password; user verification is required. The finish stores
//!    the `Passkey` (`db::webauthn::AddCredential`: credential id, name, counter, backup flags;
//!    a credential id registered already is 409) and records `mfa_enrolled`. From then on a
//!    password login of the account answers `mfa_required` with method `webauthn`.
//! 2. **Second factor** ([`sign_in_start`] with an `mfa_token`, [`sign_in_finish`]): the start
//!    peeks at the step (`mfa::peek`, no attempt spent) and allows the step user's passkeys. The
//!    finish spends an attempt (`mfa::attempt`: the step's bounded attempts and the account's
//!    lockout gate), takes the ceremony bound to that user, verifies; a refused assertion is
//!    `mfa::failed` (401 `invalid_code`). A verified one updates the stored passkey
//!    ([`record_use`]: counter, backup state, `last_used_at`; a counter that did not move
//!    forward is refused, in the database too, so two assertions checked against the same stored
//!    counter cannot both pass) and `mfa::complete`s the step with `amr`
//!    `["pwd", "hwk"|"swk", "mfa"]` (`swk` for a backup-eligible, i.e. synced, passkey).
//! 3. **Passwordless** ([`sign_in_start`] without a token, [`sign_in_finish`]): the start asks
//!    for any discoverable credential of this RP (no allow list, no `mediation`: the page starts
//!    it from a button). The finish reads the user handle (the user's id) and the credential id
//!    from the assertion, loads that credential (it must belong to that user), verifies with user
//!    verification required, records the use as above, and returns the user with `amr`
//!    `["hwk"|"swk", "mfa"]` (possession of the key and the PIN or biometric that unlocked it),
//!    the current password version (a password change still ends the session the usual way) and
//!    an `mfa_succeeded {passwordless: true}` event. An inactive user is refused like a bad
//!    assertion; with `REQUIRE_VERIFIED_EMAIL=true` an unverified address is refused after the
//!    check, as a password login is.
//!
//!    Passwordless and the lockout: a failed passwordless assertion does **not** count against
//!    the account's lockout, and the lockout does not stop a passwordless sign-in. Anyone can
//!    post an assertion naming any user handle, so counting them would let a stranger lock any
//!    account without knowing anything; and a signature over a fresh challenge cannot be guessed,
//!    so there is nothing to slow down. What bounds the attempts is the per-IP `login` rate
//!    limit of both routes, and each attempt needs a fresh single-use ceremony. A failure is
//!    recorded as an `mfa_failed` event for the user the handle names, when it exists, and as
//!    `auth_logins_total{outcome="failure"}`.
//! 4. **Removal** ([`delete`], Bearer): needs the user's password, checked as a password
//!    change's old password (through the lockout gate); a passkey of another user is 404.
//!    Records `mfa_removed`.

use std::sync::Arc;
use std::time::Duration;

use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::db::users::{self, UserRecord};
use auth_actors::db::webauthn as db;
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder, WebauthnError,
};

use super::error::{Entity, FlowError, PasskeyError};
use super::login::Checked;
use super::mfa::{self, StepKind, amr};
use crate::app::App;
use crate::domain::Peer;
use crate::metrics::{Outcome, OutcomeLabels};

/// How long a ceremony may take between its start and its finish.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// The longest name a passkey may be given (in characters).
pub const NAME_MAX: usize = 100;
const METHOD: &str = "webauthn";

/// The relying party the service is, from `PUBLIC_URL`: `Err` (why) when that URL's host cannot
/// be an RP ID (an IP address, or no host).
pub fn relying_party(public_url: &str, name: &str) -> Result<Arc<Webauthn>, String> {
    let url = Url::parse(public_url).map_err(|e| format!("PUBLIC_URL is not a URL: {e}"))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(_) => {
            return Err(format!(
                "the host of PUBLIC_URL ({public_url}) is an IP address, which cannot be a WebAuthn relying party id"
            ));
        }
        None => return Err("PUBLIC_URL has no host".into()),
    };
    let mut origin = url.clone();
    origin.set_path("");
    origin.set_query(None);
    origin.set_fragment(None);
    WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name(name).build())
        .map(Arc::new)
        .map_err(|e| format!("no WebAuthn relying party for {public_url}: {e}"))
}

/// A ceremony begun: its id (the finish names it) and the options for
/// `navigator.credentials.create/get`, in webauthn-rs's JSON shape (`{"publicKey": {…}}`).
#[derive(Debug, Clone)]
pub struct Ceremony {
    pub id: Uuid,
    pub options: serde_json::Value,
}

/// A registered passkey, as listed to its user.
#[derive(Debug, Clone)]
pub struct CredentialInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

impl From<&db::Credential> for CredentialInfo {
    fn from(c: &db::Credential) -> Self {
        CredentialInfo {
            id: c.id,
            name: c.name.clone(),
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            sign_count: c.sign_count,
            backup_eligible: c.backup_eligible,
            backup_state: c.backup_state,
        }
    }
}

/// The browser's answer to `navigator.credentials.create`, as the registration finish parses it.
pub fn parse_registration(credential: &serde_json::Value) -> Result<RegisterPublicKeyCredential, FlowError> {
    serde_json::from_value(credential.clone()).map_err(|_| PasskeyError::Malformed.into())
}

/// The browser's answer to `navigator.credentials.get`, as the sign-in finish parses it.
pub fn parse_assertion(credential: &serde_json::Value) -> Result<PublicKeyCredential, FlowError> {
    serde_json::from_value(credential.clone()).map_err(|_| PasskeyError::Malformed.into())
}

fn rp(app: &App) -> Result<Arc<Webauthn>, FlowError> {
    app.webauthn.clone().ok_or(FlowError::Passkey(PasskeyError::Disabled))
}

/// Runs a verification (signature checks, possibly RSA, and attestation parsing) on a
/// blocking thread, off the async runtime.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, FlowError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| PasskeyError::Internal.into())
}

/// What a refusal of webauthn-rs tells the client (nothing about the stored credential).
fn reason(e: &WebauthnError) -> &'static str {
    match e {
        WebauthnError::MismatchedChallenge | WebauthnError::ChallengeNotFound => "the challenge does not match",
        WebauthnError::InvalidRPOrigin => "the origin does not match",
        WebauthnError::InvalidRPIDHash => "the relying party id does not match",
        WebauthnError::UserNotPresent | WebauthnError::UserNotVerified => "user verification is required",
        WebauthnError::CredentialPossibleCompromise => "the signature counter did not advance",
        WebauthnError::CredentialExcludedFromRequest | WebauthnError::CredentialNotFound => {
            "the credential is not allowed here"
        }
        WebauthnError::AuthenticationFailure => "the signature does not verify",
        _ => "the credential could not be verified",
    }
}

/// Stores a new ceremony's state; its id.
async fn store_ceremony(
    app: &App,
    kind: &'static str,
    user_id: Option<Uuid>,
    state: impl serde::Serialize,
) -> Result<Uuid, FlowError> {
    let state = serde_json::to_value(state).map_err(|_| PasskeyError::Internal)?;
    let id = Uuid::new_v4();
    app.services.db.run(db::StartCeremony { id, kind, user_id, state, ttl: CEREMONY_TTL }).await?;
    Ok(id)
}

async fn take_ceremony<T: serde::de::DeserializeOwned>(
    app: &App,
    id: Uuid,
    kind: &'static str,
    user_id: Option<Uuid>,
) -> Result<T, FlowError> {
    let state =
        app.services.db.run(db::TakeCeremony { id, kind, user_id }).await?.ok_or(PasskeyError::UnknownCeremony)?;
    serde_json::from_value(state).map_err(|_| PasskeyError::UnknownCeremony.into())
}

fn passkey_of(c: &db::Credential) -> Result<Passkey, FlowError> {
    serde_json::from_value(c.passkey.clone()).map_err(|_| PasskeyError::Internal.into())
}

/// The stored form of a passkey, and its counter and backup flags.
fn stored(passkey: &Passkey) -> Result<(serde_json::Value, i64, bool, bool), FlowError> {
    let value = serde_json::to_value(passkey).map_err(|_| PasskeyError::Internal)?;
    let cred = &value["cred"];
    let count = cred["counter"].as_i64().unwrap_or(0);
    let eligible = cred["backup_eligible"].as_bool().unwrap_or(false);
    let state = cred["backup_state"].as_bool().unwrap_or(false);
    Ok((value, count, eligible, state))
}

/// Begins registering a passkey for `user`.
pub async fn register_start(app: &App, user: &UserRecord) -> Result<Ceremony, FlowError> {
    let rp = rp(app)?;
    let existing = app.services.db.run(db::ListCredentials { user_id: user.id }).await?;
    let exclude = existing.iter().map(|c| c.credential_id.clone().into()).collect::<Vec<_>>();
    let (options, state) = rp
        .start_passkey_registration(user.id, &user.username, &user.username, Some(exclude))
        .map_err(|_| PasskeyError::Internal)?;
    let mut options = serde_json::to_value(options).map_err(|_| PasskeyError::Internal)?;
    // Discoverable if the authenticator can (a passkey that signs in without a password), without
    // failing on a security key that has no room for one.
    if let Some(selection) = options["publicKey"].get_mut("authenticatorSelection") {
        selection["residentKey"] = "preferred".into();
        selection["requireResidentKey"] = false.into();
    }
    let id = store_ceremony(app, "register", Some(user.id), &state).await?;
    Ok(Ceremony { id, options })
}

/// [`register_start`] for the user `user_id` (a caller of the API).
pub async fn register_start_for(app: &App, user_id: Uuid) -> Result<Ceremony, FlowError> {
    let user = app.services.db.run(users::Get { id: user_id }).await?.ok_or(FlowError::UserGone)?;
    register_start(app, &user).await
}

/// Finishes a registration with the browser's credential JSON.
pub async fn register_finish(
    app: &App,
    user_id: Uuid,
    ceremony: Uuid,
    credential: &serde_json::Value,
    name: Option<String>,
    peer: &Peer,
) -> Result<CredentialInfo, FlowError> {
    let rp = rp(app)?;
    let credential = parse_registration(credential)?;
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| "Passkey".into());
    if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(crate::domain::FieldError::new("name", format!("at most {NAME_MAX} printable characters")).into());
    }
    let state: PasskeyRegistration = take_ceremony(app, ceremony, "register", Some(user_id)).await?;
    let passkey = off_runtime(move || rp.finish_passkey_registration(&credential, &state))
        .await?
        .map_err(|e| PasskeyError::RegistrationRefused(reason(&e)))?;
    let (value, sign_count, backup_eligible, backup_state) = stored(&passkey)?;
    let add = db::AddCredential {
        id: Uuid::now_v7(),
        user_id,
        credential_id: passkey.cred_id().as_ref().to_vec(),
        passkey: value,
        name,
        sign_count,
        backup_eligible,
        backup_state,
    };
    let row = app.services.db.run(add).await?;
    let event = SecurityEvent::MfaEnrolled { user: user_id, method: METHOD, credential: Some(row.id) };
    app.services.db.run(events::Record { event, ip: peer.ip_string() }).await?;
    Ok(CredentialInfo::from(&row))
}

/// The user's passkeys.
pub async fn list(app: &App, user_id: Uuid) -> Result<Vec<CredentialInfo>, FlowError> {
    let rows = app.services.db.run(db::ListCredentials { user_id }).await?;
    Ok(rows.iter().map(CredentialInfo::from).collect())
}

/// Deletes one of the user's passkeys, given the user's password.
pub async fn delete(app: &App, user_id: Uuid, id: Uuid, password: String, peer: &Peer) -> Result<(), FlowError> {
    super::account::check_old_password(app, user_id, password, peer).await?;
    if !app.services.db.run(db::DeleteCredential { user_id, id }).await? {
        return Err(FlowError::NotFound(Entity::Passkey));
    }
    let event = SecurityEvent::MfaRemoved { user: user_id, method: METHOD, credential: Some(id), by: None };
    app.services.db.run(events::Record { event, ip: peer.ip_string() }).await?;
    Ok(())
}

/// Begins a sign-in: with an `mfa_token` as the second factor of that step (of `kind`), without
/// one passwordless (discoverable credentials).
pub async fn sign_in_start(app: &App, mfa_token: Option<&str>, kind: StepKind) -> Result<Ceremony, FlowError> {
    let rp = rp(app)?;
    let Some(token) = mfa_token else {
        let (options, state) = rp.start_discoverable_authentication().map_err(|_| PasskeyError::Internal)?;
        let mut options = serde_json::to_value(options).map_err(|_| PasskeyError::Internal)?;
        // Started from a button, not from the autofill of a form field.
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        let id = store_ceremony(app, "discoverable", None, &state).await?;
        return Ok(Ceremony { id, options });
    };
    let step = mfa::peek(app, token).await?.ok_or(FlowError::InvalidMfaToken)?;
    let step_kind = if step.session_kind == "browser" { StepKind::Browser } else { StepKind::Api };
    if step_kind != kind {
        return Err(FlowError::InvalidMfaToken);
    }
    let rows = app.services.db.run(db::ListCredentials { user_id: step.user_id }).await?;
    let passkeys = rows.iter().map(passkey_of).collect::<Result<Vec<_>, _>>()?;
    if passkeys.is_empty() {
        return Err(PasskeyError::NoPasskey.into());
    }
    let (options, state) = rp.start_passkey_authentication(&passkeys).map_err(|_| PasskeyError::Internal)?;
    let options = serde_json::to_value(options).map_err(|_| PasskeyError::Internal)?;
    let id = store_ceremony(app, "authenticate", Some(step.user_id), &state).await?;
    Ok(Ceremony { id, options })
}

/// Finishes a sign-in with the browser's assertion JSON: the user as checked, with its `amr`.
pub async fn sign_in_finish(
    app: &App,
    ceremony: Uuid,
    mfa_token: Option<&str>,
    kind: StepKind,
    credential: &serde_json::Value,
    peer: &Peer,
) -> Result<Checked, FlowError> {
    let rp = rp(app)?;
    let assertion = parse_assertion(credential)?;
    match mfa_token {
        Some(token) => second_factor(app, rp, ceremony, token, kind, assertion, peer).await,
        None => passwordless(app, rp, ceremony, assertion, peer).await,
    }
}

/// `hwk` for a passkey bound to its device, `swk` for one that may be synced (backup eligible).
fn factor(backup_eligible: bool) -> &'static str {
    if backup_eligible { amr::SWK } else { amr::HWK }
}

async fn second_factor(
    app: &App,
    rp: Arc<Webauthn>,
    ceremony: Uuid,
    token: &str,
    kind: StepKind,
    assertion: PublicKeyCredential,
    peer: &Peer,
) -> Result<Checked, FlowError> {
    let step = mfa::attempt(app, token, kind, peer).await?;
    let state: PasskeyAuthentication = take_ceremony(app, ceremony, "authenticate", Some(step.user_id())).await?;
    let found =
        app.services.db.run(db::FindCredential { credential_id: assertion.get_credential_id().to_vec() }).await?;
    let Some(row) = found.filter(|c| c.user_id == step.user_id()) else {
        return Err(mfa::failed(app, &step, METHOD, peer).await);
    };
    let result = match off_runtime(move || rp.finish_passkey_authentication(&assertion, &state)).await? {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(reason = reason(&e), "a passkey assertion was refused");
            return Err(mfa::failed(app, &step, METHOD, peer).await);
        }
    };
    let Some(eligible) = record_use(app, &row, &result).await? else {
        return Err(mfa::failed(app, &step, METHOD, peer).await);
    };
    mfa::complete(app, step, METHOD, mfa::with_second_factor(factor(eligible)), peer).await
}

async fn passwordless(
    app: &App,
    rp: Arc<Webauthn>,
    ceremony: Uuid,
    assertion: PublicKeyCredential,
    peer: &Peer,
) -> Result<Checked, FlowError> {
    let state: DiscoverableAuthentication = take_ceremony(app, ceremony, "discoverable", None).await?;
    let refused = |why: &'static str| FlowError::Passkey(PasskeyError::AssertionRefused(why));
    let (user_id, credential_id) =
        rp.identify_discoverable_authentication(&assertion).map_err(|_| refused("the assertion names no user"))?;
    let found = app.services.db.run(db::FindCredential { credential_id: credential_id.to_vec() }).await?;
    let Some(row) = found.filter(|c| c.user_id == user_id) else {
        return Err(refused("the credential is not registered"));
    };
    let failed = |why: &'static str| async move {
        app.metrics.logins.get_or_create(&OutcomeLabels { outcome: Outcome::failure }).inc();
        let event = SecurityEvent::MfaFailed { user: user_id, method: METHOD };
        if let Err(e) = app.services.db.run(events::Record { event, ip: peer.ip_string() }).await {
            return FlowError::from(e);
        }
        refused(why)
    };
    let key = DiscoverableKey::from(passkey_of(&row)?);
    let verified = off_runtime(move || rp.finish_discoverable_authentication(&assertion, state, &[key])).await?;
    let result = match verified {
        Ok(r) if r.user_verified() => r,
        Ok(_) => return Err(failed("user verification is required").await),
        Err(e) => return Err(failed(reason(&e)).await),
    };
    let Some(eligible) = record_use(app, &row, &result).await? else {
        return Err(failed("the signature counter did not advance").await);
    };
    let db = &app.services.db;
    let user = db.run(users::Get { id: user_id }).await?.filter(|u| u.is_active);
    let (Some(user), Some((_, password_version))) = (user, db.run(users::PasswordHash { id: user_id }).await?) else {
        return Err(refused("the account is disabled"));
    };
    if app.config.accounts.require_verified_email && !user.email_verified {
        if let Err(e) = super::email::resend_after_refusal(app, &user).await {
            tracing::warn!(error = %e, "no new verification mail after a refused sign-in");
        }
        return Err(FlowError::EmailUnverified);
    }
    let event = SecurityEvent::MfaSucceeded { user: user_id, method: METHOD, passwordless: true };
    db.run(events::Record { event, ip: peer.ip_string() }).await?;
    let factors = db.run(auth_actors::db::mfa::GetFactors { user_id }).await?;
    let amr = vec![factor(eligible).to_string(), amr::MFA.to_string()];
    Ok(Checked { user, password_version, factors, amr })
}

/// Stores what a verified assertion changed (counter, backup state, last use): `None` when the
/// counter did not move forward past what is stored now (another assertion, maybe of a cloned
/// authenticator, got there first). Otherwise whether the passkey is backup eligible.
async fn record_use(
    app: &App,
    row: &db::Credential,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<Option<bool>, FlowError> {
    let mut passkey = passkey_of(row)?;
    passkey.update_credential(result);
    let (value, sign_count, backup_eligible, backup_state) = stored(&passkey)?;
    let update = db::RecordUse { id: row.id, passkey: value, sign_count, backup_eligible, backup_state };
    Ok(app.services.db.run(update).await?.then_some(backup_eligible))
}

#[cfg(test)]
mod tests {
    use super::relying_party;

    #[test]
    fn the_relying_party_is_the_host_of_public_url_and_its_origin() {
        let rp = relying_party("https://auth.example.com:8443/base/", "auth-service").expect("rp");
        let origins: Vec<String> = rp.get_allowed_origins().iter().map(|u| u.as_str().to_string()).collect();
        assert_eq!(origins, ["https://auth.example.com:8443/"]);
        assert!(relying_party("http://localhost:8080", "auth-service").is_ok());
    }

    #[test]
    fn an_ip_address_or_no_url_is_no_relying_party() {
        for url in ["http://127.0.0.1:8080", "http://[::1]/", "not a url", "file:///tmp"] {
            assert!(relying_party(url, "auth-service").is_err(), "{url}");
        }
    }
}
