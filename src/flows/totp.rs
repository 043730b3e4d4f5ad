//! TOTP (RFC 6238) as a second factor, and its recovery codes.
//!
//! (The interface the routes and the hosted pages use; the bodies are being built.)

use auth_actors::db::users::UserRecord;
use uuid::Uuid;

use super::error::FlowError;
use super::login::Checked;
use super::mfa::Step;
use crate::app::App;
use crate::domain::Peer;

/// A TOTP authenticator being set up: the secret (base32) and its `otpauth://` URI.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
}

/// What proves the user may remove the authenticator.
#[derive(Debug, Clone)]
pub enum Proof {
    Password(String),
    Code(String),
}

/// Which kind of code a second step presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Totp,
    RecoveryCode,
}

/// Starts (or restarts) setting up TOTP for `user`: a new secret, unconfirmed.
pub async fn enrol(_app: &App, _user: &UserRecord) -> Result<Enrolment, FlowError> {
    todo!("TOTP enrolment")
}

/// Confirms the pending authenticator with a code; returns the ten recovery codes (shown once).
pub async fn confirm(_app: &App, _user_id: Uuid, _code: &str, _peer: &Peer) -> Result<Vec<String>, FlowError> {
    todo!("TOTP confirmation")
}

/// Removes the authenticator and its recovery codes.
pub async fn remove(_app: &App, _user_id: Uuid, _proof: Proof, _peer: &Peer) -> Result<(), FlowError> {
    todo!("TOTP removal")
}

/// The second step with a TOTP or recovery code, on a step [`super::mfa::attempt`] returned.
pub async fn second_step(
    _app: &App,
    _step: Step,
    _kind: CodeKind,
    _code: &str,
    _peer: &Peer,
) -> Result<Checked, FlowError> {
    todo!("TOTP second step")
}

/// The QR code of an `otpauth://` URI, as an SVG document.
pub fn qr_svg(_otpauth_uri: &str) -> String {
    todo!("QR code")
}
