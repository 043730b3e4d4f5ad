//! Users and their role names.

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use super::Operation;
use super::events::{self, SecurityEvent};
use super::mfa::FACTOR_COLUMNS;

/// A user as the API shows it, with the names of the roles it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    /// The current address was confirmed by a link mailed to it (an email change lands
    /// confirmed, so this never describes an address other than `email`).
    pub email_verified: bool,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
    pub roles: Vec<String>,
}

/// A user and its stored password hash, for login.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: UserRecord,
    pub password_hash: String,
    /// Raised by every password change (not by a re-hash).
    pub password_version: i32,
    /// The second factors the account has set up.
    pub factors: super::mfa::Factors,
}

pub(crate) const USER_COLUMNS: &str = "u.id, u.username, u.email, u.email_verified, u.is_active, u.created_at,
    ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
          WHERE ur.user_id = u.id ORDER BY r.name) AS roles";

/// A user from a row with the columns `id, username, email, email_verified, is_active,
/// created_at, roles`.
pub(crate) fn user_from(row: &Row) -> UserRecord {
    UserRecord {
        id: row.get("id"),
        username: row.get("username"),
        email: row.get("email"),
        email_verified: row.get("email_verified"),
        is_active: row.get("is_active"),
        created_at: row.get("created_at"),
        roles: row.get("roles"),
    }
}

/// Inserts a user holding the `user` role (when that role exists).
#[derive(Debug, Clone)]
pub struct Create {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

impl Operation for Create {
    type Output = UserRecord;

    async fn run(&self, client: &mut Client) -> Result<UserRecord, Error> {
        let tx = client.transaction().await?;
        let user = create_in(&tx, self).await?;
        tx.commit().await?;
        Ok(user)
    }
}

/// [`Create`] inside the caller's transaction (signup also issues the verification mail in it).
pub(crate) async fn create_in(tx: &impl GenericClient, create: &Create) -> Result<UserRecord, Error> {
    let id = Uuid::now_v7();
    let created_at: OffsetDateTime = super::one(
        tx,
        "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, $4) RETURNING created_at",
        &[&id, &create.username, &create.email, &create.password_hash],
    )
    .await?
    .get(0);
    let granted = super::run(
        tx,
        "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE lower(name) = 'user'",
        &[&id],
    )
    .await?;
    let roles = if granted == 1 { vec!["user".to_string()] } else { Vec::new() };
    Ok(UserRecord {
        id,
        username: create.username.clone(),
        email: create.email.clone(),
        email_verified: false,
        is_active: true,
        created_at,
        roles,
    })
}

pub(crate) async fn get_in(client: &impl GenericClient, id: Uuid) -> Result<Option<UserRecord>, Error> {
    Ok(super::opt(client, &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"), &[&id])
        .await?
        .as_ref()
        .map(user_from))
}

/// A user with its current roles.
#[derive(Debug, Clone, Copy)]
pub struct Get {
    pub id: Uuid,
}

impl Operation for Get {
    type Output = Option<UserRecord>;

    async fn run(&self, client: &mut Client) -> Result<Option<UserRecord>, Error> {
        get_in(&*client, self.id).await
    }
}

/// One page of users with their roles, oldest account first, and the total.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Operation for Page {
    type Output = (Vec<UserRecord>, i64);

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let page = super::Paged {
            columns: USER_COLUMNS,
            from: "users u",
            order: "u.created_at, u.id",
            limit: self.limit,
            offset: self.offset,
        };
        page.fetch(&*client, &[], user_from).await
    }
}

/// Looks a user up by username or, when `login` contains `@`, by email; case-insensitively;
/// with its password hash.
#[derive(Debug, Clone)]
pub struct FindCredentials {
    pub login: String,
}

impl Operation for FindCredentials {
    type Output = Option<Credentials>;

    async fn run(&self, client: &mut Client) -> Result<Option<Credentials>, Error> {
        let column = if self.login.contains('@') { "email" } else { "username" };
        Ok(super::opt(
            &*client,
            &format!(
                "SELECT {USER_COLUMNS}, u.password_hash, u.password_version, {FACTOR_COLUMNS}
                 FROM users u WHERE lower(u.{column}) = lower($1)"
            ),
            &[&self.login],
        )
        .await?
        .map(|row| Credentials {
            user: user_from(&row),
            password_hash: row.get("password_hash"),
            password_version: row.get("password_version"),
            factors: super::mfa::factors_from(&row),
        }))
    }
}

/// The stored hash of a user and its password version, for a password change.
#[derive(Debug, Clone, Copy)]
pub struct PasswordHash {
    pub id: Uuid,
}

impl Operation for PasswordHash {
    type Output = Option<(String, i32)>;

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        Ok(super::opt(&*client, "SELECT password_hash, password_version FROM users WHERE id = $1", &[&self.id])
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }
}

/// Replaces a user's password hash with its re-hash, only if it is still `old` (the hash the
/// login verified): a password changed meanwhile is never overwritten. Returns whether it was.
/// The password version stays: it is the same password.
#[derive(Debug, Clone)]
pub struct Rehash {
    pub id: Uuid,
    pub old: String,
    pub new: String,
}

impl Operation for Rehash {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        Ok(super::run(
            &*client,
            "UPDATE users SET password_hash = $3, updated_at = now() WHERE id = $1 AND password_hash = $2",
            &[&self.id, &self.old, &self.new],
        )
        .await?
            == 1)
    }
}

/// A password change: the password version whose hash the caller's old password was verified
/// against, and the new hash.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub verified_version: i32,
    pub new: String,
}

/// What a profile update led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileOutcome {
    /// Applied: the user as it now is, the sessions a new password revoked, and whether the
    /// username changed.
    Updated { user: UserRecord, revoked: Vec<Uuid>, renamed: bool },
    /// The user no longer exists.
    Gone,
    /// The password changed after the old one was verified: nothing was applied.
    PasswordChanged,
}

/// Applies a profile change; a new password also revokes every session but `keep_family`. The
/// password is replaced only if it is still the one the caller proved it knows (its version
/// has not moved; a re-hash does not move it).
#[derive(Debug, Clone)]
pub struct UpdateProfile {
    pub id: Uuid,
    pub username: Option<String>,
    pub password: Option<PasswordChange>,
    pub keep_family: Option<Uuid>,
}

impl Operation for UpdateProfile {
    type Output = ProfileOutcome;

    /// The standing that every check reads carries the account's current names, so a rename
    /// must reach every instance's cache at once. A password change alone leaves the standing
    /// as it was (its sessions are fenced instead), so it does not empty every cache.
    fn changes_standing(output: &ProfileOutcome) -> bool {
        matches!(output, ProfileOutcome::Updated { renamed: true, .. })
    }

    async fn run(&self, client: &mut Client) -> Result<ProfileOutcome, Error> {
        let id = self.id;
        let tx = client.transaction().await?;
        let mut revoked = Vec::new();
        if let Some(change) = &self.password {
            if super::run(
                &tx,
                "UPDATE users SET password_hash = $3, password_version = password_version + 1, updated_at = now()
                     WHERE id = $1 AND password_version = $2",
                &[&id, &change.verified_version, &change.new],
            )
            .await?
                == 0
            {
                return Ok(ProfileOutcome::PasswordChanged);
            }
            revoked = super::sessions::revoke_all_in(&tx, id, self.keep_family, "password_changed").await?;
            events::record_in(&tx, &SecurityEvent::PasswordChanged { user: id }, None).await?;
        }
        if let Some(username) = &self.username {
            super::run(&tx, "UPDATE users SET username = $2, updated_at = now() WHERE id = $1", &[&id, username])
                .await?;
        }
        let Some(user) = get_in(&tx, id).await? else { return Ok(ProfileOutcome::Gone) };
        tx.commit().await?;
        Ok(ProfileOutcome::Updated { user, revoked, renamed: self.username.is_some() })
    }
}

/// What deleting a user led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted: the sessions it had, so that the caller can fence off their access tokens.
    Deleted(Vec<Uuid>),
    NoSuchUser,
    /// The user is the last active admin: nothing changed.
    LastAdmin,
}

/// Deletes a user (sessions and role grants go with it) and records who did it (`actor`),
/// unless it is the last active admin (checked in both transactions, under the admin role's
/// lock; see the `roles` module). A deletion changes the user's standing.
///
/// Its sessions are revoked first, in a transaction of its own: once that commits no refresh
/// can rotate, so the delete that follows meets at most the rotations already running, and it
/// locks their tokens before the user row, in the order a rotation takes them.
#[derive(Debug, Clone, Copy)]
pub struct Delete {
    pub id: Uuid,
    pub actor: Option<Uuid>,
}

impl Operation for Delete {
    type Output = DeleteOutcome;

    fn changes_standing(output: &Self::Output) -> bool {
        matches!(output, DeleteOutcome::Deleted(_))
    }

    async fn run(&self, client: &mut Client) -> Result<DeleteOutcome, Error> {
        let id = self.id;
        let tx = client.transaction().await?;
        if super::roles::is_last_admin(&tx, id).await? {
            return Ok(DeleteOutcome::LastAdmin);
        }
        let mut sessions = super::sessions::revoke_all_in(&tx, id, None, "user_deleted").await?;
        tx.commit().await?;

        let tx = client.transaction().await?;
        super::run(&tx, "SELECT 1 FROM refresh_tokens WHERE user_id = $1 ORDER BY id FOR UPDATE", &[&id]).await?;
        if super::roles::is_last_admin(&tx, id).await? {
            return Ok(DeleteOutcome::LastAdmin);
        }
        for row in super::all(&tx, "SELECT id FROM refresh_families WHERE user_id = $1", &[&id]).await? {
            let family: Uuid = row.get(0);
            if !sessions.contains(&family) {
                sessions.push(family);
            }
        }
        let Some(row) = super::opt(&tx, "DELETE FROM users WHERE id = $1 RETURNING username", &[&id]).await? else {
            return Ok(DeleteOutcome::NoSuchUser);
        };
        let event = SecurityEvent::UserDeleted { user: id, username: row.get(0), by: self.actor };
        events::record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(DeleteOutcome::Deleted(sessions))
    }
}
