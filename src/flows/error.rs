//! [`FlowError`]: why a flow did not succeed, in the domain's own terms. Flows never pick a
//! status code; `crate::http::error` is the one place that turns these into HTTP answers.
//!
//! The failures of the actors (PostgreSQL, Redis, keys, hashing) arrive here through `From`,
//! which keeps what the domain cares about (a name was taken, the database could not answer,
//! contention) and logs the cause of an outage once.

use std::time::Duration;

use auth_actors::CallError;
use auth_actors::db::DbError;
use auth_actors::key_manager::SignError;
use auth_actors::redis::RedisError;

use crate::domain::FieldError;
use crate::passwords::HashError;

/// What a request was about, when it named something that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    User,
    Role,
    Session,
    Client,
    Passkey,
    /// A confirmed TOTP authenticator.
    Totp,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::User => "user",
            Entity::Role => "role",
            Entity::Session => "session",
            Entity::Client => "client",
            Entity::Passkey => "passkey",
            Entity::Totp => "TOTP authenticator",
        })
    }
}

/// A part the service depends on, when it cannot serve now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Redis,
    /// An actor that is restarting, saturated or slow.
    Actor(&'static str),
    PasswordHashing,
    TokenSigning,
    Randomness,
    /// The k-anonymity range API, when `PWNED_PASSWORDS_FAIL_CLOSED` makes new passwords wait for it.
    BreachCheck,
    /// A mail could not be rendered (a template bug): the change that needed it is refused.
    MailTemplates,
    /// `MFA_ENCRYPTION_KEYS` is not set (or lacks the key a stored secret names): TOTP
    /// secrets can be neither sealed nor opened.
    MfaKeys,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dependency::Database => "database",
            Dependency::Redis => "redis",
            Dependency::Actor(name) => name,
            Dependency::PasswordHashing => "password hashing",
            Dependency::TokenSigning => "token signing",
            Dependency::Randomness => "random number generator",
            Dependency::BreachCheck => "password breach check",
            Dependency::MailTemplates => "mail",
            Dependency::MfaKeys => "TOTP (the server has no MFA_ENCRYPTION_KEYS for it)",
        })
    }
}

/// Every way a flow can fail.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A value broke its rule.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// Wrong password, unknown or inactive user: one answer for all of them.
    #[error("invalid username or password")]
    BadCredentials,
    /// The old password given to change the password is wrong (the caller is authenticated).
    #[error("old password is incorrect")]
    WrongPassword,
    /// The account is locked, or a limit is used up; retry after `retry_after`.
    #[error("too many requests")]
    Throttled { retry_after: Duration },
    /// The Bearer token was missing, invalid or revoked.
    #[error("{0}")]
    Token(Rejection),
    /// The Bearer token is valid but was not granted this scope.
    #[error("the token lacks scope {0}")]
    InsufficientScope(&'static str),
    /// The caller's token is valid but its user no longer exists.
    #[error("user no longer exists")]
    UserGone,
    /// The caller does not hold any of the roles the route needs.
    #[error("requires role {}", .0.join(" or "))]
    MissingRole(&'static [&'static str]),
    #[error("invalid or expired refresh token")]
    RefreshInvalid,
    #[error("refresh token reuse detected; the session has been revoked")]
    RefreshReused,
    #[error("no such {0}")]
    NotFound(Entity),
    #[error("the user does not hold this role")]
    RoleNotHeld,
    #[error("the user already holds this role")]
    RoleAlreadyHeld,
    /// Access is decided by role name, so a role `seed-roles` makes keeps its name and stays.
    #[error("role {0:?} is built in: it cannot be renamed or deleted")]
    BuiltInRole(String),
    /// A rename to a built-in role's name would hand its powers to the renamed role's holders.
    #[error("the name {0:?} belongs to a built-in role")]
    ReservedRoleName(String),
    /// The change would leave no active account holding `admin`.
    #[error("the last admin cannot lose the admin role; make another account admin first")]
    LastAdmin,
    /// A unique value (`username`, `email`, `name`, ...) is already taken.
    #[error("{0} already exists")]
    Taken(&'static str),
    /// The password changed between its check and the change that relied on it.
    #[error("the password was changed by another request; sign in again")]
    PasswordChangedMeanwhile,
    /// Concurrent requests kept aborting this one's transaction; nothing was written.
    #[error("the request conflicted with concurrent changes; try again")]
    Contention,
    #[error("{0} unavailable")]
    Unavailable(Dependency),
    /// The database refused a value of the request (a character or a number it cannot store)
    /// that no check before it caught: bad input, never an outage.
    #[error("the request holds a value that cannot be stored")]
    InvalidValue,
    /// A client asked to revoke a token that was not issued to it (RFC 7009 §2.1).
    #[error("the token was not issued to this client")]
    NotYours,
    /// Client metadata that RFC 7591 §3.2.2 refuses: `code` is `invalid_client_metadata` or
    /// `invalid_redirect_uri`.
    #[error("{description}")]
    ClientMetadata { code: &'static str, description: String },
    /// A mailed link's token is unknown, tampered with, of another purpose, expired, used,
    /// voided by a newer one, no longer matches the account's address, or its account is
    /// disabled: one answer for all, so that it tells nothing.
    #[error("the link is invalid or has expired")]
    InvalidAccountToken,
    /// The password was right, but `REQUIRE_VERIFIED_EMAIL` is on and the account's address is
    /// not verified yet.
    #[error("the email address of this account is not verified; follow the link mailed to it")]
    EmailUnverified,
    /// The password was right; the account has a second factor, which the client must now
    /// present with this `mfa_token` (403 `mfa_required`).
    #[error("a second factor is required to complete this sign-in")]
    MfaRequired(Box<Challenge>),
    /// The `mfa_token` is unknown, used, expired or out of attempts: one answer for all.
    #[error("the mfa_token is invalid, used or expired; sign in again")]
    InvalidMfaToken,
    /// The second factor's code (or assertion) was wrong.
    #[error("invalid code")]
    InvalidMfaCode,
    /// A passkey ceremony could not go on.
    #[error(transparent)]
    Passkey(#[from] PasskeyError),
    /// The account's second factors are not in the state the request needs (a TOTP
    /// authenticator already confirmed, or none waiting for its confirmation).
    #[error("{0}")]
    MfaState(&'static str),
}

/// Why a passkey (WebAuthn) ceremony was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    /// `PUBLIC_URL`'s host cannot be a relying party id (an IP address): passkeys are off.
    #[error("passkeys are not available: the service's PUBLIC_URL has no domain name")]
    Disabled,
    /// The credential is not the JSON of a WebAuthn credential.
    #[error("the credential is not a WebAuthn credential")]
    Malformed,
    /// The ceremony is unknown, expired, used, or another user's or kind's.
    #[error("the ceremony is unknown, expired or used; start again")]
    UnknownCeremony,
    /// A second step by passkey for an account without one.
    #[error("the account has no passkey")]
    NoPasskey,
    /// A new credential did not verify.
    #[error("the passkey was refused: {0}")]
    RegistrationRefused(&'static str),
    /// A passwordless assertion did not verify.
    #[error("the passkey was refused: {0}")]
    AssertionRefused(&'static str),
    /// Server state that should always (de)serialise did not.
    #[error("passkey state could not be processed")]
    Internal,
}

impl FlowError {
    /// How long a client should wait before retrying, when that is part of the answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FlowError::Throttled { retry_after } => Some(*retry_after),
            FlowError::Unavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl From<crate::secret::NoRandomness> for FlowError {
    fn from(_: crate::secret::NoRandomness) -> Self {
        FlowError::Unavailable(Dependency::Randomness)
    }
}

impl From<crate::mail::RenderError> for FlowError {
    fn from(e: crate::mail::RenderError) -> Self {
        tracing::error!(error = %e, "a mail could not be rendered");
        FlowError::Unavailable(Dependency::MailTemplates)
    }
}

impl From<DbError> for FlowError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Conflict(field) => FlowError::Taken(field),
            DbError::Contention => FlowError::Contention,
            DbError::Call(c) => c.into(),
            DbError::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "database unavailable");
                FlowError::Unavailable(Dependency::Database)
            }
            DbError::Unannounced(e) => e.into(),
            DbError::Rejected(reason) => {
                tracing::info!(reason = %reason, "the database refused a value of the request");
                FlowError::InvalidValue
            }
        }
    }
}

impl From<RedisError> for FlowError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Call(c) => c.into(),
            RedisError::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "redis unavailable");
                FlowError::Unavailable(Dependency::Redis)
            }
        }
    }
}

impl From<SignError> for FlowError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Call(c) => c.into(),
            SignError::Token(t) => {
                tracing::error!(error = %t, "token signing failed");
                FlowError::Unavailable(Dependency::TokenSigning)
            }
        }
    }
}

impl From<HashError> for FlowError {
    fn from(e: HashError) -> Self {
        if let HashError::Internal(reason) = &e {
            tracing::error!(reason = %reason, "password hashing failed");
        }
        FlowError::Unavailable(Dependency::PasswordHashing)
    }
}

impl From<CallError> for FlowError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unavailable(a) | CallError::Timeout(a) | CallError::Overloaded(a) => {
                FlowError::Unavailable(Dependency::Actor(a))
            }
        }
    }
}

/// Why a token was refused; all of them are 401 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token has been revoked")]
    Revoked,
}

/// What a password login of an account with a second factor answers (403 `mfa_required`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Challenge {
    pub mfa_token: String,
    pub methods: Vec<&'static str>,
    pub expires_in: u64,
}
