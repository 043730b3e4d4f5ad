//! Roles and user-role grants. Every change records a security event in the same transaction.

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use super::Operation;
use super::events::{SecurityEvent, record_in};
use super::users::UserRecord;

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

const ROLE_COLUMNS: &str = "id, name, description, created_at";

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

/// Partial update; `description: Some(None)` clears it. `None` when there is no such role. A
/// rename changes the standing of everyone who holds the role.
#[derive(Debug, Clone)]
pub struct Update {
    pub id: Uuid,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub actor: Uuid,
}

impl Operation for Update {
    type Output = Option<RoleRecord>;

    fn changes_standing(output: &Self::Output) -> bool {
        output.is_some()
    }

    async fn run(&self, client: &mut Client) -> Result<Option<RoleRecord>, Error> {
        let tx = client.transaction().await?;
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
            return Ok(None);
        };
        let role = role_from(&row);
        let event = SecurityEvent::RoleUpdated { role: role.id, name: role.name.clone(), by: self.actor };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(Some(role))
    }
}

/// Deletes a role; grants of it go with it. False when there is no such role.
#[derive(Debug, Clone, Copy)]
pub struct Delete {
    pub id: Uuid,
    pub actor: Uuid,
}

impl Operation for Delete {
    type Output = bool;

    fn changes_standing(deleted: &bool) -> bool {
        *deleted
    }

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let tx = client.transaction().await?;
        let Some(row) = super::opt(&tx, "DELETE FROM roles WHERE id = $1 RETURNING name", &[&self.id]).await? else {
            return Ok(false);
        };
        record_in(&tx, &SecurityEvent::RoleDeleted { role: self.id, name: row.get(0), by: self.actor }, None).await?;
        tx.commit().await?;
        Ok(true)
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

/// Withdraws a role from a user; false when the user did not hold it.
#[derive(Debug, Clone, Copy)]
pub struct Remove {
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub actor: Uuid,
}

impl Operation for Remove {
    type Output = bool;

    fn changes_standing(removed: &bool) -> bool {
        *removed
    }

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let tx = client.transaction().await?;
        let Some(row) = super::opt(
            &tx,
            "DELETE FROM user_roles ur USING roles r WHERE ur.user_id = $1 AND ur.role_id = $2 AND r.id = ur.role_id
                 RETURNING r.name",
            &[&self.user_id, &self.role_id],
        )
        .await?
        else {
            return Ok(false);
        };
        let event =
            SecurityEvent::RoleRemoved { user: self.user_id, role: self.role_id, name: row.get(0), by: self.actor };
        record_in(&tx, &event, None).await?;
        tx.commit().await?;
        Ok(true)
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

/// One page of users with their roles, oldest account first, and the total.
#[derive(Debug, Clone, Copy)]
pub struct UsersPage {
    pub limit: i64,
    pub offset: i64,
}

impl Operation for UsersPage {
    type Output = (Vec<UserRecord>, i64);

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let page = super::Paged {
            columns: super::users::USER_COLUMNS,
            from: "users u",
            order: "u.created_at, u.id",
            limit: self.limit,
            offset: self.offset,
        };
        page.fetch(&*client, &[], super::users::user_from).await
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
