//! Security events, kept for the admin endpoint. Every event the service records is a variant
//! of [`SecurityEvent`], and this module is the only place that writes them: the variant fixes
//! the stored `event_type`, the columns it fills and the shape of its `detail`.

use deadpool_postgres::GenericClient;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Operation;

/// Something an operator may need to see later.
#[derive(Debug, Clone, PartialEq)]
pub enum SecurityEvent {
    /// A login failed; `user` is `None` when the name matched nobody.
    LoginFailed {
        user: Option<Uuid>,
    },
    /// Too many failed password checks locked the account.
    Lockout {
        user: Option<Uuid>,
        retry_after_secs: u64,
    },
    /// The old password given with a password change was wrong.
    PasswordCheckFailed {
        user: Uuid,
    },
    PasswordChanged {
        user: Uuid,
    },
    /// The password was replaced through a reset link mailed to the account.
    PasswordReset {
        user: Uuid,
    },
    /// A rotated refresh token was presented again within the grace window and was served.
    RefreshRetried {
        user: Uuid,
        family: Uuid,
        retry: i32,
    },
    /// A rotated refresh token was presented after the grace window: the session is revoked.
    RefreshReuseDetected {
        user: Uuid,
        family: Uuid,
    },
    LogoutAll {
        user: Uuid,
        sessions: usize,
    },
    UserDeleted {
        user: Uuid,
        username: String,
        by: Option<Uuid>,
    },
    RoleCreated {
        role: Uuid,
        name: String,
        by: Uuid,
    },
    RoleUpdated {
        role: Uuid,
        name: String,
        by: Uuid,
    },
    RoleDeleted {
        role: Uuid,
        name: String,
        by: Uuid,
    },
    /// `by` is the admin, or `None` with `via` naming the operator command.
    RoleAssigned {
        user: Uuid,
        role: Uuid,
        name: String,
        by: Option<Uuid>,
        via: Option<&'static str>,
    },
    RoleRemoved {
        user: Uuid,
        role: Uuid,
        name: String,
        by: Uuid,
    },
    KeyActivated {
        kid: String,
    },
    KeyRetired {
        kid: String,
    },
    KeyRemoved {
        kid: String,
    },
    KeyRevoked {
        kid: String,
    },
    /// `by` is the admin, or `None` for the operator command.
    ClientRegistered {
        client: String,
        name: String,
        by: Option<Uuid>,
    },
    ClientUpdated {
        client: String,
        by: Option<Uuid>,
    },
    /// The client got a new secret; the previous ones work `overlap_secs` longer.
    ClientSecretRotated {
        client: String,
        by: Option<Uuid>,
        overlap_secs: u64,
    },
    ClientDeleted {
        client: String,
        by: Option<Uuid>,
    },
    /// A client failed to authenticate at the token, introspection or revocation endpoint.
    ClientAuthFailed {
        client: String,
        method: &'static str,
        reason: &'static str,
    },
    /// Too many failed authentications locked the client out.
    ClientLockout {
        client: String,
        retry_after_secs: u64,
    },
    /// The account's address was confirmed by the link mailed to it.
    EmailVerified {
        user: Uuid,
    },
    /// The user asked to move the account to `new` (the change waits for its confirmation).
    EmailChangeRequested {
        user: Uuid,
        new: String,
    },
    /// A confirmed email change: the account's address is now `new`.
    EmailChanged {
        user: Uuid,
        old: String,
        new: String,
    },
    /// A second factor was added: `method` is `totp` or `webauthn` (then `credential` names it).
    MfaEnrolled {
        user: Uuid,
        method: &'static str,
        credential: Option<Uuid>,
    },
    /// A second factor was removed by its user (`by` = `None`) or an admin.
    MfaRemoved {
        user: Uuid,
        method: &'static str,
        credential: Option<Uuid>,
        by: Option<Uuid>,
    },
    /// A second step succeeded: `method` is `totp`, `recovery_code` or `webauthn`;
    /// `passwordless` when a passkey alone signed the user in.
    MfaSucceeded {
        user: Uuid,
        method: &'static str,
        passwordless: bool,
    },
    /// A wrong second-factor code or a refused assertion.
    MfaFailed {
        user: Uuid,
        method: &'static str,
    },
    /// A recovery code was spent; `remaining` are left.
    RecoveryCodeUsed {
        user: Uuid,
        remaining: i64,
    },
}

impl SecurityEvent {
    /// The stored (and listed) type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            SecurityEvent::LoginFailed { .. } => "login_failed",
            SecurityEvent::Lockout { .. } => "lockout",
            SecurityEvent::PasswordCheckFailed { .. } => "password_check_failed",
            SecurityEvent::PasswordChanged { .. } => "password_changed",
            SecurityEvent::PasswordReset { .. } => "password_reset",
            SecurityEvent::RefreshRetried { .. } => "refresh_retried",
            SecurityEvent::RefreshReuseDetected { .. } => "refresh_reuse_detected",
            SecurityEvent::LogoutAll { .. } => "logout_all",
            SecurityEvent::UserDeleted { .. } => "user_deleted",
            SecurityEvent::RoleCreated { .. } => "role_created",
            SecurityEvent::RoleUpdated { .. } => "role_updated",
            SecurityEvent::RoleDeleted { .. } => "role_deleted",
            SecurityEvent::RoleAssigned { .. } => "role_assigned",
            SecurityEvent::RoleRemoved { .. } => "role_removed",
            SecurityEvent::KeyActivated { .. } => "key_activated",
            SecurityEvent::KeyRetired { .. } => "key_retired",
            SecurityEvent::KeyRemoved { .. } => "key_removed",
            SecurityEvent::KeyRevoked { .. } => "key_revoked",
            SecurityEvent::ClientRegistered { .. } => "client_registered",
            SecurityEvent::ClientUpdated { .. } => "client_updated",
            SecurityEvent::ClientSecretRotated { .. } => "client_secret_rotated",
            SecurityEvent::ClientDeleted { .. } => "client_deleted",
            SecurityEvent::ClientAuthFailed { .. } => "client_auth_failed",
            SecurityEvent::ClientLockout { .. } => "client_lockout",
            SecurityEvent::EmailVerified { .. } => "email_verified",
            SecurityEvent::EmailChangeRequested { .. } => "email_change_requested",
            SecurityEvent::EmailChanged { .. } => "email_changed",
            SecurityEvent::MfaEnrolled { .. } => "mfa_enrolled",
            SecurityEvent::MfaRemoved { .. } => "mfa_removed",
            SecurityEvent::MfaSucceeded { .. } => "mfa_succeeded",
            SecurityEvent::MfaFailed { .. } => "mfa_failed",
            SecurityEvent::RecoveryCodeUsed { .. } => "recovery_code_used",
        }
    }

    /// The user the event is about.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            SecurityEvent::LoginFailed { user } | SecurityEvent::Lockout { user, .. } => *user,
            SecurityEvent::PasswordCheckFailed { user }
            | SecurityEvent::PasswordChanged { user }
            | SecurityEvent::PasswordReset { user }
            | SecurityEvent::RefreshRetried { user, .. }
            | SecurityEvent::RefreshReuseDetected { user, .. }
            | SecurityEvent::LogoutAll { user, .. }
            | SecurityEvent::UserDeleted { user, .. }
            | SecurityEvent::RoleAssigned { user, .. }
            | SecurityEvent::RoleRemoved { user, .. } => Some(*user),
            SecurityEvent::EmailVerified { user }
            | SecurityEvent::EmailChangeRequested { user, .. }
            | SecurityEvent::EmailChanged { user, .. } => Some(*user),
            SecurityEvent::MfaEnrolled { user, .. }
            | SecurityEvent::MfaRemoved { user, .. }
            | SecurityEvent::MfaSucceeded { user, .. }
            | SecurityEvent::MfaFailed { user, .. }
            | SecurityEvent::RecoveryCodeUsed { user, .. } => Some(*user),
            _ => None,
        }
    }

    /// Who made it happen, when that is a user.
    pub fn actor_id(&self) -> Option<Uuid> {
        match self {
            SecurityEvent::PasswordCheckFailed { user }
            | SecurityEvent::PasswordChanged { user }
            | SecurityEvent::PasswordReset { user }
            | SecurityEvent::LogoutAll { user, .. }
            | SecurityEvent::EmailVerified { user }
            | SecurityEvent::EmailChangeRequested { user, .. }
            | SecurityEvent::EmailChanged { user, .. }
            | SecurityEvent::MfaEnrolled { user, .. }
            | SecurityEvent::MfaSucceeded { user, .. }
            | SecurityEvent::RecoveryCodeUsed { user, .. } => Some(*user),
            SecurityEvent::MfaRemoved { user, by, .. } => Some(by.unwrap_or(*user)),
            SecurityEvent::UserDeleted { by, .. }
            | SecurityEvent::RoleAssigned { by, .. }
            | SecurityEvent::ClientRegistered { by, .. }
            | SecurityEvent::ClientUpdated { by, .. }
            | SecurityEvent::ClientSecretRotated { by, .. }
            | SecurityEvent::ClientDeleted { by, .. } => *by,
            SecurityEvent::RoleCreated { by, .. }
            | SecurityEvent::RoleUpdated { by, .. }
            | SecurityEvent::RoleDeleted { by, .. }
            | SecurityEvent::RoleRemoved { by, .. } => Some(*by),
            _ => None,
        }
    }

    /// The event's own details, as listed in `detail`.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            SecurityEvent::LoginFailed { user: None } => json!({ "unknown_user": true }),
            SecurityEvent::Lockout { retry_after_secs, .. } => json!({ "retry_after_secs": retry_after_secs }),
            SecurityEvent::RefreshRetried { family, retry, .. } => json!({ "family_id": family, "retry": retry }),
            SecurityEvent::RefreshReuseDetected { family, .. } => json!({ "family_id": family }),
            SecurityEvent::LogoutAll { sessions, .. } => json!({ "sessions": sessions }),
            SecurityEvent::UserDeleted { username, .. } => json!({ "username": username }),
            SecurityEvent::RoleCreated { role, name, .. }
            | SecurityEvent::RoleUpdated { role, name, .. }
            | SecurityEvent::RoleDeleted { role, name, .. }
            | SecurityEvent::RoleRemoved { role, name, .. } => json!({ "role_id": role, "name": name }),
            SecurityEvent::RoleAssigned { role, name, via: Some(via), .. } => {
                json!({ "role_id": role, "name": name, "by": via })
            }
            SecurityEvent::RoleAssigned { role, name, .. } => json!({ "role_id": role, "name": name }),
            SecurityEvent::KeyActivated { kid }
            | SecurityEvent::KeyRetired { kid }
            | SecurityEvent::KeyRemoved { kid }
            | SecurityEvent::KeyRevoked { kid } => json!({ "kid": kid }),
            SecurityEvent::ClientRegistered { client, name, .. } => json!({ "client_id": client, "client_name": name }),
            SecurityEvent::ClientUpdated { client, .. } | SecurityEvent::ClientDeleted { client, .. } => {
                json!({ "client_id": client })
            }
            SecurityEvent::ClientSecretRotated { client, overlap_secs, .. } => {
                json!({ "client_id": client, "overlap_secs": overlap_secs })
            }
            SecurityEvent::ClientAuthFailed { client, method, reason } => {
                json!({ "client_id": client, "method": method, "reason": reason })
            }
            SecurityEvent::ClientLockout { client, retry_after_secs } => {
                json!({ "client_id": client, "retry_after_secs": retry_after_secs })
            }
            SecurityEvent::EmailChangeRequested { new, .. } => json!({ "new_email": new }),
            SecurityEvent::EmailChanged { old, new, .. } => json!({ "old_email": old, "new_email": new }),
            SecurityEvent::MfaEnrolled { method, credential, .. } => match credential {
                Some(c) => json!({ "method": method, "credential_id": c }),
                None => json!({ "method": method }),
            },
            SecurityEvent::MfaRemoved { method, credential, by, .. } => {
                let mut d = json!({ "method": method, "by_admin": by.is_some() });
                if let Some(c) = credential {
                    d["credential_id"] = json!(c);
                }
                d
            }
            SecurityEvent::MfaSucceeded { method, passwordless, .. } => {
                json!({ "method": method, "passwordless": passwordless })
            }
            SecurityEvent::MfaFailed { method, .. } => json!({ "method": method }),
            SecurityEvent::RecoveryCodeUsed { remaining, .. } => json!({ "remaining": remaining }),
            _ => json!({}),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub created_at: OffsetDateTime,
    pub event_type: String,
    pub user_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub ip_address: Option<String>,
    pub detail: serde_json::Value,
}

/// Records one event from `ip` (when a request caused it), inside whatever transaction
/// `client` is.
pub async fn record_in(
    client: &impl GenericClient,
    event: &SecurityEvent,
    ip: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let (user, actor, detail) = (event.user_id(), event.actor_id(), event.detail());
    super::run(
        client,
        "INSERT INTO security_events (event_type, user_id, actor_id, ip_address, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&event.event_type(), &user, &actor, &ip, &detail],
    )
    .await?;
    Ok(())
}

/// Records a security event on its own.
#[derive(Debug, Clone)]
pub struct Record {
    pub event: SecurityEvent,
    pub ip: Option<String>,
}

impl Operation for Record {
    type Output = ();

    async fn run(&self, client: &mut deadpool_postgres::Client) -> Result<(), tokio_postgres::Error> {
        record_in(&*client, &self.event, self.ip.as_deref()).await
    }
}

/// One page of events, newest first, optionally filtered by type and user, with the total.
#[derive(Debug, Clone)]
pub struct Page {
    pub event_type: Option<String>,
    pub user_id: Option<Uuid>,
    pub limit: i64,
    pub offset: i64,
}

impl Operation for Page {
    type Output = (Vec<EventRow>, i64);

    async fn run(&self, client: &mut deadpool_postgres::Client) -> Result<Self::Output, tokio_postgres::Error> {
        let page = super::Paged {
            columns: "id, created_at, event_type, user_id, actor_id, ip_address, detail",
            from: "security_events WHERE ($1::text IS NULL OR event_type = $1) AND ($2::uuid IS NULL OR user_id = $2)",
            order: "created_at DESC, id DESC",
            limit: self.limit,
            offset: self.offset,
        };
        page.fetch(&*client, &[&self.event_type, &self.user_id], |r| EventRow {
            id: r.get(0),
            created_at: r.get(1),
            event_type: r.get(2),
            user_id: r.get(3),
            actor_id: r.get(4),
            ip_address: r.get(5),
            detail: r.get(6),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_the_stored_shape() {
        let user = Uuid::now_v7();
        let unknown = SecurityEvent::LoginFailed { user: None };
        assert_eq!(
            (unknown.event_type(), unknown.user_id(), unknown.detail()),
            ("login_failed", None, json!({ "unknown_user": true }))
        );
        assert_eq!(SecurityEvent::LoginFailed { user: Some(user) }.detail(), json!({}));
        let change = SecurityEvent::PasswordChanged { user };
        assert_eq!((change.user_id(), change.actor_id()), (Some(user), Some(user)));
        let bootstrap = SecurityEvent::RoleAssigned {
            user,
            role: user,
            name: "admin".into(),
            by: None,
            via: Some("create-superuser"),
        };
        assert_eq!(bootstrap.detail()["by"], "create-superuser");
        assert_eq!(bootstrap.actor_id(), None);
    }
}
