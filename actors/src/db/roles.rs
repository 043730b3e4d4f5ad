//! Roles and user-role grants. Every change records a security event in the same transaction.
//!
//! Two things are protected here, in the transaction that would break them:
//! - The built-in roles (those `seed-roles` makes) keep their names and stay: access is decided
//!   by role name, so renaming `admin`, or deleting `service` and renaming another role to it,
//!   would silently move every grant. No other role may take a built-in name either.
//! - Some active account always holds `admin`. Every write that can take `admin` away from an
//!   account (removing the grant, deleting the account) first locks the admin role's row
//!   (`FOR NO KEY UPDATE`, which grants' foreign-key checks do not wait for), then counts the
//!   other active admins. Two such writes therefore run one after the other, and under READ
//!   COMMITTED the second one's count is a new statement that sees what the first committed:
//!   two admins removing each other at once leave one of them admin.

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use super::events::{SecurityEvent, record_in};
use super::{DEFAULT_ROLES, Operation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: OffsetDateTime,
}

fn role_from(row: &Row) -> RoleRecord {
    RoleRecord { id: row.get(0), name: row.get(1), description: row.get(2), created_at: row.get(3) }
}

/// How a grant names its role.
#[derive(Debug, Clone)]
pub enum RoleRef {
    Id(Uuid),
    Name(String),
}

/// Why a grant could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignOutcome {
    Assigned(RoleRecord),
    AlreadyAssigned,
    NoSuchUser,
    NoSuchRole,
}

/// What a change to an existing role led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange<T> {
    Done(T),
    NoSuchRole,
    /// The role is built in (named here): it cannot be renamed or deleted.
    BuiltIn(String),
    /// The new name (given here) is a built-in role's: taking it would hand that role's powers to
    /// this role's holders.
    ReservedName(String),
}

/// What withdrawing a role from a user led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    NotHeld,
    /// The user is the last active admin: the grant stays.
    LastAdmin,
}

const ROLE_COLUMNS: &str = "id, name, description, created_at";

/// Whether `name` is (in any case) one of the roles every installation starts with.
pub fn is_built_in(name: &str) -> bool {
    DEFAULT_ROLES.iter().any(|(builtin, _)| builtin.eq_ignore_ascii_case(name))
}

/// Locks the admin role's row until the transaction ends and returns its id (`None` before
/// `seed-roles`). See the module doc for why this makes the last-admin check race-free.
async fn lock_admin_role(tx: &impl GenericClient) -> Result<Option<Uuid>, Error> {
    Ok(super::opt(tx, "SELECT id FROM roles WHERE lower(name) = 'admin' FOR NO KEY UPDATE", &[])
        .await?
        .map(|r| r.get(0)))
}

/// Whether taking `admin` away from `user_id` would leave no active account holding it. Takes
/// the admin role's lock first, so it must be called inside the transaction that then takes it
/// away.
pub(crate) async fn is_last_admin(tx: &impl GenericClient, user_id: Uuid) -> Result<bool, Error> {
    let Some(admin) = lock_admin_role(tx).await? else { return Ok(false) };
    Ok(super::one(
        tx,
        "SELECT EXISTS (SELECT 1 FROM user_roles WHERE user_id = $1 AND role_id = $2)
            AND NOT EXISTS (SELECT 1 FROM user_roles ur JOIN users u ON u.id = ur.user_id
                            WHERE ur.role_id = $2 AND ur.user_id <> $1 AND u.is_active)",
        &[&user_id, &admin],
    )
    .await?
    .get(0))
}

/// The current name of a role, its row locked until the transaction ends.
async fn lock_role(tx: &impl GenericClient, id: Uuid) -> Result<Option<String>, Error> {
    Ok(super::opt(tx, "SELECT name FROM roles WHERE id = $1 FOR UPDATE", &[&id]).await?.map(|r| r.get(0)))
}

/// Creates a role; `actor` is the admin.
#[derive(Debug, Clone)]
pub struct Create {
    pub name: String,
    pub description: Option<String>,
    pub actor: Uuid,
}

impl Operation for Create {
    type Output = RoleRecord;

    async fn run(&self, client: &mut Client) -> Result<RoleRecord, Error> {
        let tx = client.transaction().await?;
        let role = role_from(
            &super::one(
                &tx,
                &format!("INSERT INTO roles (id, name, description) VALUES ($1, $2, $3) RETURNING {ROLE_COLUMNS}"),
                &[&Uuid::now_v7(), &self.name, &self.description],
            )
            .await?,
        );
        let event = SecurityEvent::RoleCreated { role: role.id, name: role.name.clone(), by: self.actor };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(role)
    }
}

/// Every role, by name.
#[derive(Debug, Clone, Copy)]
pub struct List;

impl Operation for List {
    type Output = Vec<RoleRecord>;

    async fn run(&self, client: &mut Client) -> Result<Vec<RoleRecord>, Error> {
        Ok(super::all(&*client, &format!("SELECT {ROLE_COLUMNS} FROM roles ORDER BY name"), &[])
            .await?
            .iter()
            .map(role_from)
            .collect())
    }
}

/// Partial update; `description: Some(None)` clears it. A built-in role keeps its name, and no
/// role takes a built-in name. A rename changes the standing of everyone who holds the role.
#[derive(Debug, Clone)]
pub struct Update {
    pub id: Uuid,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub actor: Uuid,
}

impl Operation for Update {
    type Output = RoleChange<RoleRecord>;

    fn changes_standing(output: &Self::Output) -> bool {
        matches!(output, RoleChange::Done(_))
    }

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let tx = client.transaction().await?;
        let Some(current) = lock_role(&tx, self.id).await? else { return Ok(RoleChange::NoSuchRole) };
        if let Some(name) = self.name.as_ref().filter(|n| **n != current) {
            if is_built_in(&current) {
                return Ok(RoleChange::BuiltIn(current));
            }
            if is_built_in(name) {
                return Ok(RoleChange::ReservedName(name.clone()));
            }
        }
        let (set_description, description) = match &self.description {
            Some(d) => (true, d.as_deref()),
            None => (false, None),
        };
        let Some(row) = super::opt(
            &tx,
            &format!(
                "UPDATE roles SET name = COALESCE($2, name),
                                  description = CASE WHEN $3 THEN $4 ELSE description END
                 WHERE id = $1 RETURNING {ROLE_COLUMNS}"
            ),
            &[&self.id, &self.name, &set_description, &description],
        )
        .await?
        else {
            return Ok(RoleChange::NoSuchRole);
        };
        let role = role_from(&row);
        let event = SecurityEvent::RoleUpdated { role: role.id, name: role.name.clone(), by: self.actor };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(RoleChange::Done(role))
    }
}

/// Deletes a role that is not built in; grants of it go with it.
#[derive(Debug, Clone, Copy)]
pub struct Delete {
    pub id: Uuid,
    pub actor: Uuid,
}

impl Operation for Delete {
    type Output = RoleChange<()>;

    fn changes_standing(output: &Self::Output) -> bool {
        matches!(output, RoleChange::Done(()))
    }

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let tx = client.transaction().await?;
        let Some(name) = lock_role(&tx, self.id).await? else { return Ok(RoleChange::NoSuchRole) };
        if is_built_in(&name) {
            return Ok(RoleChange::BuiltIn(name));
        }
        super::run(&tx, "DELETE FROM roles WHERE id = $1", &[&self.id]).await?;
        record_in(&tx, &SecurityEvent::RoleDeleted { role: self.id, name, by: self.actor }, None).await?;
        tx.commit().await?;
        Ok(RoleChange::Done(()))
    }
}

async fn find_role(client: &impl GenericClient, role: &RoleRef) -> Result<Option<RoleRecord>, Error> {
    let row = match role {
        RoleRef::Id(id) => {
            super::opt(client, &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE id = $1"), &[id]).await?
        }
        RoleRef::Name(name) => {
            super::opt(client, &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE lower(name) = lower($1)"), &[name])
                .await?
        }
    };
    Ok(row.as_ref().map(role_from))
}

/// Grants a role (by id or name) to a user.
#[derive(Debug, Clone)]
pub struct Assign {
    pub user_id: Uuid,
    pub role: RoleRef,
    pub actor: Uuid,
}

impl Operation for Assign {
    type Output = AssignOutcome;

    fn changes_standing(output: &AssignOutcome) -> bool {
        matches!(output, AssignOutcome::Assigned(_))
    }

    async fn run(&self, client: &mut Client) -> Result<AssignOutcome, Error> {
        let tx = client.transaction().await?;
        if super::opt(&tx, "SELECT 1 FROM users WHERE id = $1", &[&self.user_id]).await?.is_none() {
            return Ok(AssignOutcome::NoSuchUser);
        }
        let Some(role) = find_role(&tx, &self.role).await? else { return Ok(AssignOutcome::NoSuchRole) };
        if super::run(
            &tx,
            "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&self.user_id, &role.id],
        )
        .await?
            == 0
        {
            return Ok(AssignOutcome::AlreadyAssigned);
        }
        let event = SecurityEvent::RoleAssigned {
            user: self.user_id,
            role: role.id,
            name: role.name.clone(),
            by: Some(self.actor),
            via: None,
        };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(AssignOutcome::Assigned(role))
    }
}

/// Withdraws a role from a user, unless it is `admin` and the user is the last active admin.
#[derive(Debug, Clone, Copy)]
pub struct Remove {
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub actor: Uuid,
}

impl Operation for Remove {
    type Output = RemoveOutcome;

    fn changes_standing(output: &RemoveOutcome) -> bool {
        *output == RemoveOutcome::Removed
    }

    async fn run(&self, client: &mut Client) -> Result<RemoveOutcome, Error> {
        let tx = client.transaction().await?;
        let is_admin_role = super::one(
            &tx,
            "SELECT EXISTS (SELECT 1 FROM roles WHERE id = $1 AND lower(name) = 'admin')",
            &[&self.role_id],
        )
        .await?
        .get::<_, bool>(0);
        if is_admin_role && is_last_admin(&tx, self.user_id).await? {
            return Ok(RemoveOutcome::LastAdmin);
        }
        let Some(row) = super::opt(
            &tx,
            "DELETE FROM user_roles ur USING roles r WHERE ur.user_id = $1 AND ur.role_id = $2 AND r.id = ur.role_id
                 RETURNING r.name",
            &[&self.user_id, &self.role_id],
        )
        .await?
        else {
            return Ok(RemoveOutcome::NotHeld);
        };
        let event =
            SecurityEvent::RoleRemoved { user: self.user_id, role: self.role_id, name: row.get(0), by: self.actor };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(RemoveOutcome::Removed)
    }
}

/// Whether `user_id` holds a role named `role_name` now.
#[derive(Debug, Clone)]
pub struct Check {
    pub user_id: Uuid,
    pub role_name: String,
}

impl Operation for Check {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        Ok(super::one(
            &*client,
            "SELECT EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                                WHERE ur.user_id = $1 AND lower(r.name) = lower($2))",
            &[&self.user_id, &self.role_name],
        )
        .await?
        .get(0))
    }
}

/// Whether deleting `user_id` would now leave no active admin: the answer a deletion gives
/// before it fences the account's tokens. The deletion checks again, under the lock.
#[derive(Debug, Clone, Copy)]
pub struct IsLastAdmin {
    pub user_id: Uuid,
}

impl Operation for IsLastAdmin {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let tx = client.transaction().await?;
        let last = is_last_admin(&tx, self.user_id).await?;
        tx.commit().await?;
        Ok(last)
    }
}

/// Whether a role of this name exists (for the guest principal).
#[derive(Debug, Clone)]
pub struct Exists {
    pub name: String,
}

impl Operation for Exists {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        Ok(super::one(&*client, "SELECT EXISTS (SELECT 1 FROM roles WHERE lower(name) = lower($1))", &[&self.name])
            .await?
            .get(0))
    }
}
