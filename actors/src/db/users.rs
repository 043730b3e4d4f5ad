//! Users and their role names.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

/// A user as the API shows it, with the names of the roles it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
    pub roles: Vec<String>,
}

/// A user and its stored password hash, for login.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: UserRecord,
    pub password_hash: String,
}

const USER_COLUMNS: &str = "u.id, u.username, u.email, u.is_active, u.created_at,
    ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
          WHERE ur.user_id = u.id ORDER BY r.name) AS roles";

/// A user from a row with the columns `id, username, email, is_active, created_at, roles`.
pub(crate) fn user_from(row: &Row) -> UserRecord {
    UserRecord {
        id: row.get("id"),
        username: row.get("username"),
        email: row.get("email"),
        is_active: row.get("is_active"),
        created_at: row.get("created_at"),
        roles: row.get("roles"),
    }
}

/// Inserts a user holding the `user` role (when that role exists).
pub async fn create(
    client: &mut deadpool_postgres::Client,
    username: &str,
    email: &str,
    password_hash: &str,
) -> Result<UserRecord, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let id = Uuid::now_v7();
    let insert = tx
        .prepare_cached(
            "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, $4) RETURNING created_at",
        )
        .await?;
    let created_at: OffsetDateTime = tx.query_one(&insert, &[&id, &username, &email, &password_hash]).await?.get(0);
    let grant = tx
        .prepare_cached("INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE lower(name) = 'user'")
        .await?;
    let granted = tx.execute(&grant, &[&id]).await?;
    tx.commit().await?;
    let roles = if granted == 1 { vec!["user".to_string()] } else { Vec::new() };
    Ok(UserRecord { id, username: username.to_string(), email: email.to_string(), is_active: true, created_at, roles })
}

pub(crate) async fn get_in(client: &impl GenericClient, id: Uuid) -> Result<Option<UserRecord>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1")).await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(user_from))
}

pub async fn get(client: &deadpool_postgres::Client, id: Uuid) -> Result<Option<UserRecord>, tokio_postgres::Error> {
    get_in(client, id).await
}

/// Looks a user up by username or, when `login` contains `@`, by email; case-insensitively.
pub async fn find_credentials(
    client: &deadpool_postgres::Client,
    login: &str,
) -> Result<Option<Credentials>, tokio_postgres::Error> {
    let column = if login.contains('@') { "email" } else { "username" };
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE lower(u.{column}) = lower($1)"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&login])
        .await?
        .map(|row| Credentials { user: user_from(&row), password_hash: row.get("password_hash") }))
}

/// The stored hash of a user, for a password change.
pub async fn password_hash(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<Option<String>, tokio_postgres::Error> {
    let stmt = client.prepare_cached("SELECT password_hash FROM users WHERE id = $1").await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.map(|r| r.get(0)))
}

pub async fn set_password_hash(
    client: &deadpool_postgres::Client,
    id: Uuid,
    hash: &str,
) -> Result<(), tokio_postgres::Error> {
    let stmt = client.prepare_cached("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1").await?;
    client.execute(&stmt, &[&id, &hash]).await?;
    Ok(())
}

/// Applies a profile change; a new password also revokes every session but `keep_family`.
/// Returns the user as it now is and the sessions that were revoked.
pub async fn update_profile(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    username: Option<&str>,
    password_hash: Option<&str>,
    keep_family: Option<Uuid>,
) -> Result<(Option<UserRecord>, Vec<Uuid>), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let mut revoked = Vec::new();
    if let Some(username) = username {
        let stmt = tx.prepare_cached("UPDATE users SET username = $2, updated_at = now() WHERE id = $1").await?;
        tx.execute(&stmt, &[&id, &username]).await?;
    }
    if let Some(hash) = password_hash {
        let stmt = tx.prepare_cached("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1").await?;
        tx.execute(&stmt, &[&id, &hash]).await?;
        revoked = super::sessions::revoke_all_in(&tx, id, keep_family, "password_changed").await?;
        super::events::record_in(&tx, "password_changed", Some(id), Some(id), None, serde_json::json!({})).await?;
    }
    let user = get_in(&tx, id).await?;
    tx.commit().await?;
    Ok((user, revoked))
}

/// Deletes a user (sessions and role grants go with it) and records who did it.
pub async fn delete(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    actor: Option<Uuid>,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached("DELETE FROM users WHERE id = $1 RETURNING username").await?;
    let Some(row) = tx.query_opt(&stmt, &[&id]).await? else { return Ok(false) };
    let username: String = row.get(0);
    super::events::record_in(&tx, "user_deleted", Some(id), actor, None, serde_json::json!({ "username": username }))
        .await?;
    tx.commit().await?;
    Ok(true)
}
