//! The values the service's rules are about, each checked once where it enters. A `Username`,
//! an `Email`, a `RoleName` or a `Password` that exists is valid: the HTTP parsers (through
//! serde) and the CLI build them the same way, and nothing downstream checks them again.
//!
//! A rule that fails is a [`FieldError`], which names the field and says what the rule is; the
//! front end answers it with 422.

use serde::Deserialize;

use crate::config::PasswordConfig;

/// A value that broke its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError { field, message: message.into() }
    }
}

/// The accessors of a checked string value, and its way in through serde (`#[serde(try_from)]`),
/// which applies the value's own `parse`.
macro_rules! checked_string {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(raw: String) -> Result<Self, FieldError> {
                $name::parse(raw)
            }
        }
    )*};
}

checked_string!(Username, Email, RoleName, RoleDescription);

/// 3–64 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Username(String);

impl Username {
    pub fn parse(raw: impl Into<String>) -> Result<Username, FieldError> {
        let raw = raw.into();
        let ok_chars = raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !(3..=64).contains(&raw.len()) || !ok_chars {
            return Err(FieldError::new("username", "username must be 3-64 characters of letters, digits, _ . -"));
        }
        Ok(Username(raw))
    }
}

/// A pragmatic address check: one `@`, a non-empty local part, a dotted domain, no spaces or
/// control characters, at most 254 characters. Surrounding whitespace is dropped first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: impl Into<String>) -> Result<Email, FieldError> {
        let raw = raw.into();
        let email = raw.trim();
        let invalid = || FieldError::new("email", "email is not a valid address");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let labels_ok = domain.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
        if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain.contains('.') || !labels_ok {
            return Err(invalid());
        }
        Ok(Email(email.to_string()))
    }
}

/// 1–64 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: impl Into<String>) -> Result<RoleName, FieldError> {
        let raw = raw.into();
        let ok = (1..=64).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
        if !ok {
            return Err(FieldError::new("name", "role name must be 1-64 characters of letters, digits, _ . : -"));
        }
        Ok(RoleName(raw))
    }
}

/// At most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RoleDescription(String);

impl RoleDescription {
    pub fn parse(raw: impl Into<String>) -> Result<RoleDescription, FieldError> {
        let raw = raw.into();
        if raw.chars().count() > 500 {
            return Err(FieldError::new("description", "description must be at most 500 characters"));
        }
        Ok(RoleDescription(raw))
    }
}

/// The password policy (§5, §9): length bounds, not the username or email, and not on the
/// bundled list of common and breached passwords (when `blocklist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    /// `PASSWORD_BLOCKLIST`: refuse passwords on [`crate::passwords::blocklist`].
    pub blocklist: bool,
}

impl From<&PasswordConfig> for PasswordPolicy {
    fn from(c: &PasswordConfig) -> Self {
        PasswordPolicy { min_length: c.min_length, max_length: c.max_length, blocklist: c.blocklist }
    }
}

/// What a refused password is told when it is on the bundled list or known to the range API.
pub const BREACHED_PASSWORD: &str = "password is too common or appeared in a data breach; choose another";

/// A new password that meets the policy for its account. Its `Debug` never shows it.
///
/// Only new passwords are built this way (signup, password change, reset, the CLI), so the
/// policy applies to every password chosen from now on; a login checks the stored hash only,
/// and an account whose existing password is now listed still signs in.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    /// `raw` as the new password of the account `username` / `email`.
    pub fn new(policy: PasswordPolicy, raw: String, username: &str, email: &str) -> Result<Password, FieldError> {
        let field = |m: String| FieldError::new("password", m);
        let len = raw.chars().count();
        if len < policy.min_length {
            return Err(field(format!("password must be at least {} characters", policy.min_length)));
        }
        if len > policy.max_length {
            return Err(field(format!("password must be at most {} characters", policy.max_length)));
        }
        if raw.eq_ignore_ascii_case(username) || raw.eq_ignore_ascii_case(email) {
            return Err(field("password must not equal the username or email".into()));
        }
        // Last, so that the list is consulted (and counted) only for otherwise valid passwords.
        if policy.blocklist && crate::passwords::blocklist::check(&raw) {
            return Err(field(BREACHED_PASSWORD.into()));
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_valid_once_built() {
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("a b c").is_err());
        assert_eq!(Username::parse("alice.b-1").expect("valid").as_str(), "alice.b-1");
        assert_eq!(Email::parse("  a@b.io ").expect("valid").as_str(), "a@b.io");
        assert!(Email::parse("a@b").is_err());
        assert!(RoleName::parse("svc:read").is_ok());
        assert!(RoleName::parse("").is_err());
        let policy = PasswordPolicy { min_length: 8, max_length: 12, blocklist: true };
        assert!(Password::new(policy, "short".into(), "alice", "a@b.io").is_err());
        assert!(Password::new(policy, "ALICE-ALICE".into(), "alice-alice", "a@b.io").is_err());
        assert!(Password::new(policy, "correct horse".into(), "alice", "a@b.io").is_err());
        assert_eq!(
            format!("{:?}", Password::new(policy, "hunter22!".into(), "alice", "a@b.io").expect("ok")),
            "Password(***)"
        );
    }

    #[test]
    fn a_listed_password_is_refused_only_while_the_list_is_on() {
        let on = PasswordPolicy { min_length: 8, max_length: 64, blocklist: true };
        let err = Password::new(on, "Password1".into(), "alice", "a@b.io").expect_err("listed");
        assert_eq!((err.field, err.message.as_str()), ("password", BREACHED_PASSWORD));
        assert!(Password::new(on, "correct horse battery".into(), "alice", "a@b.io").is_ok());
        let off = PasswordPolicy { blocklist: false, ..on };
        assert!(Password::new(off, "Password1".into(), "alice", "a@b.io").is_ok());
    }

    #[test]
    fn serde_refuses_an_invalid_value_with_its_rule() {
        let err = serde_json::from_value::<Username>(serde_json::json!("x")).expect_err("invalid");
        assert!(err.to_string().contains("3-64 characters"), "{err}");
    }
}

/// Who is calling, as far as the network tells: for login history, security events and limits.
/// (The OAuth client a request authenticates as is [`crate::oauth::client_auth::AuthenticatedClient`].)
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: std::net::IpAddr,
    pub user_agent: Option<String>,
}

impl Peer {
    pub fn ip_string(&self) -> Option<String> {
        Some(self.ip.to_string())
    }
}
