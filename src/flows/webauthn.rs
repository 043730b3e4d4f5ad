//! Passkeys (WebAuthn, with webauthn-rs): registration, sign-in as a second factor, and
//! passwordless sign-in with discoverable credentials.
//!
//! (The interface the routes and the hosted pages use; the bodies are being built.)

use auth_actors::db::users::UserRecord;
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::FlowError;
use super::login::Checked;
use super::mfa::StepKind;
use crate::app::App;
use crate::domain::Peer;

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

/// Begins registering a passkey for `user`.
pub async fn register_start(_app: &App, _user: &UserRecord) -> Result<Ceremony, FlowError> {
    todo!("passkey registration start")
}

/// Finishes a registration with the browser's credential JSON.
pub async fn register_finish(
    _app: &App,
    _user_id: Uuid,
    _ceremony: Uuid,
    _credential: &serde_json::Value,
    _name: Option<String>,
    _peer: &Peer,
) -> Result<CredentialInfo, FlowError> {
    todo!("passkey registration finish")
}

/// The user's passkeys.
pub async fn list(_app: &App, _user_id: Uuid) -> Result<Vec<CredentialInfo>, FlowError> {
    todo!("passkey list")
}

/// Deletes one of the user's passkeys, given the user's password.
pub async fn delete(_app: &App, _user_id: Uuid, _id: Uuid, _password: String, _peer: &Peer) -> Result<(), FlowError> {
    todo!("passkey delete")
}

/// Begins a sign-in: with an `mfa_token` as the second factor of that step (of `kind`), without
/// one passwordless (discoverable credentials).
pub async fn sign_in_start(_app: &App, _mfa_token: Option<&str>, _kind: StepKind) -> Result<Ceremony, FlowError> {
    todo!("passkey sign-in start")
}

/// Finishes a sign-in with the browser's assertion JSON: the user as checked, with its `amr`.
pub async fn sign_in_finish(
    _app: &App,
    _ceremony: Uuid,
    _mfa_token: Option<&str>,
    _kind: StepKind,
    _credential: &serde_json::Value,
    _peer: &Peer,
) -> Result<Checked, FlowError> {
    todo!("passkey sign-in finish")
}
