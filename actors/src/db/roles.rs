//! Roles and user-role grants. Every change records a security event in the same transaction.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::events::record_in;
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

pub async fn create(
    client: &mut deadpool_postgres::Client,
    name: &str,
    description: Option<&str>,
    actor: Uuid,
) -> Result<RoleRecord, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO roles (id, name, description) VALUES ($1, $2, $3) RETURNING id, name, description, created_at",
        )
        .await?;
    let role = role_from(&tx.query_one(&stmt, &[&Uuid::now_v7(), &name, &description]).await?);
    record_in(
        &tx,
        "role_created",
        None,
        Some(actor),
        None,
        serde_json::json!({ "role_id": role.id, "name": role.name }),
    )
    .await?;
    tx.commit().await?;
    Ok(role)
}

pub async fn list(client: &deadpool_postgres::Client) -> Result<Vec<RoleRecord>, tokio_postgres::Error> {
    let stmt = client.prepare_cached("SELECT id, name, description, created_at FROM roles ORDER BY name").await?;
    Ok(client.query(&stmt, &[]).await?.iter().map(role_from).collect())
}

/// Partial update; `description: Some(None)` clears it. `None` when there is no such role.
pub async fn update(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    name: Option<&str>,
    description: Option<Option<&str>>,
    actor: Uuid,
) -> Result<Option<RoleRecord>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE roles SET name = COALESCE($2, name),
                              description = CASE WHEN $3 THEN $4 ELSE description END
             WHERE id = $1 RETURNING id, name, description, created_at",
        )
        .await?;
    let (set_description, description) = match description {
        Some(d) => (true, d),
        None => (false, None),
    };
    let Some(row) = tx.query_opt(&stmt, &[&id, &name, &set_description, &description]).await? else { return Ok(None) };
    let role = role_from(&row);
    record_in(
        &tx,
        "role_updated",
        None,
        Some(actor),
        None,
        serde_json::json!({ "role_id": role.id, "name": role.name }),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(role))
}

/// Deletes a role; grants of it go with it. False when there is no such role.
pub async fn delete(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    actor: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached("DELETE FROM roles WHERE id = $1 RETURNING name").await?;
    let Some(row) = tx.query_opt(&stmt, &[&id]).await? else { return Ok(false) };
    let name: String = row.get(0);
    record_in(&tx, "role_deleted", None, Some(actor), None, serde_json::json!({ "role_id": id, "name": name })).await?;
    tx.commit().await?;
    Ok(true)
}

async fn find_role(client: &impl GenericClient, role: &RoleRef) -> Result<Option<RoleRecord>, tokio_postgres::Error> {
    let row = match role {
        RoleRef::Id(id) => {
            let stmt =
                client.prepare_cached("SELECT id, name, description, created_at FROM roles WHERE id = $1").await?;
            client.query_opt(&stmt, &[id]).await?
        }
        RoleRef::Name(name) => {
            let stmt = client
                .prepare_cached("SELECT id, name, description, created_at FROM roles WHERE lower(name) = lower($1)")
                .await?;
            client.query_opt(&stmt, &[name]).await?
        }
    };
    Ok(row.as_ref().map(role_from))
}

pub async fn assign(
    client: &mut deadpool_postgres::Client,
    user_id: Uuid,
    role: &RoleRef,
    actor: Uuid,
) -> Result<AssignOutcome, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let user = tx.prepare_cached("SELECT 1 FROM users WHERE id = $1").await?;
    if tx.query_opt(&user, &[&user_id]).await?.is_none() {
        return Ok(AssignOutcome::NoSuchUser);
    }
    let Some(role) = find_role(&tx, role).await? else { return Ok(AssignOutcome::NoSuchRole) };
    let stmt =
        tx.prepare_cached("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING").await?;
    if tx.execute(&stmt, &[&user_id, &role.id]).await? == 0 {
        return Ok(AssignOutcome::AlreadyAssigned);
    }
    record_in(
        &tx,
        "role_assigned",
        Some(user_id),
        Some(actor),
        None,
        serde_json::json!({ "role_id": role.id, "name": role.name }),
    )
    .await?;
    tx.commit().await?;
    Ok(AssignOutcome::Assigned(role))
}

/// Removes a grant; false when the user did not hold that role.
pub async fn remove(
    client: &mut deadpool_postgres::Client,
    user_id: Uuid,
    role_id: Uuid,
    actor: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "DELETE FROM user_roles ur USING roles r WHERE ur.user_id = $1 AND ur.role_id = $2 AND r.id = ur.role_id
             RETURNING r.name",
        )
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&user_id, &role_id]).await? else { return Ok(false) };
    let name: String = row.get(0);
    record_in(
        &tx,
        "role_removed",
        Some(user_id),
        Some(actor),
        None,
        serde_json::json!({ "role_id": role_id, "name": name }),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether `user_id` holds a role named `role_name` now.
pub async fn check(
    client: &deadpool_postgres::Client,
    user_id: Uuid,
    role_name: &str,
) -> Result<bool, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                            WHERE ur.user_id = $1 AND lower(r.name) = lower($2))",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&user_id, &role_name]).await?.get(0))
}

/// One page of users with their roles, oldest account first, and the total.
pub async fn users_page(
    client: &deadpool_postgres::Client,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserRecord>, i64), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT u.id, u.username, u.email, u.is_active, u.created_at,
                    ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                          WHERE ur.user_id = u.id ORDER BY r.name) AS roles
             FROM users u ORDER BY u.created_at, u.id LIMIT $1 OFFSET $2",
        )
        .await?;
    let count = client.prepare_cached("SELECT count(*) FROM users").await?;
    let items = client.query(&stmt, &[&limit, &offset]).await?.iter().map(super::users::user_from).collect();
    let total: i64 = client.query_one(&count, &[]).await?.get(0);
    Ok((items, total))
}

/// Whether a role of this name exists (for the guest principal).
pub async fn exists(client: &deadpool_postgres::Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let stmt = client.prepare_cached("SELECT EXISTS (SELECT 1 FROM roles WHERE lower(name) = lower($1))").await?;
    Ok(client.query_one(&stmt, &[&name]).await?.get(0))
}
