//! The state every request handler shares: configuration, actor handles and metrics.

use std::sync::Arc;

use auth_actors::Services;

use crate::authz::AuthzCache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::oauth::protocol::ClientCache;
use crate::oauth::remote_keys::RemoteKeys;
use crate::passwords::PasswordHasher;

/// Cheap to clone (one reference count): every request holds one.
#[derive(Clone)]
pub struct App(Arc<AppState>);

pub struct AppState {
    pub config: Arc<Config>,
    pub services: Services,
    pub metrics: Arc<Metrics>,
    /// Bounded Argon2id hashing, off the async runtime.
    pub hasher: PasswordHasher,
    /// Callers' current roles, valid while the authorization epoch holds.
    pub authz: AuthzCache,
    /// OAuth clients' registrations and secrets, valid while the authorization epoch holds.
    pub clients: ClientCache,
    /// Clients' public keys fetched from their `jwks_uri`.
    pub remote_keys: RemoteKeys,
    /// The k-anonymity range API new passwords are checked against, when `PWNED_PASSWORDS_URL` is set.
    pub breach_api: Option<crate::passwords::breach::RangeApi>,
    /// The WebAuthn relying party (from `PUBLIC_URL`); `None` when that URL's host cannot be
    /// one (an IP address): passkeys are then off.
    pub webauthn: Option<Arc<webauthn_rs::prelude::Webauthn>>,
    /// The keys sealing TOTP secrets (`MFA_ENCRYPTION_KEYS`); `None` when unset, and TOTP
    /// enrolment then answers 503.
    pub mfa_keys: Option<crate::sealing::KeyRing>,
    /// Set when shutdown has begun: readyz answers 503 and HTTP/1.1 answers close their
    /// connections, while every other route still serves.
    pub stopping: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl App {
    pub fn new(state: AppState) -> App {
        App(Arc::new(state))
    }
}

impl std::ops::Deref for App {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}
