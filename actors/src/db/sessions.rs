//! Refresh tokens and the sessions (token families) they belong to.
//!
//! Rotation is one compare-and-swap: the `UPDATE ... WHERE rotated_at IS NULL` that marks the
//! presented token rotated succeeds for exactly one caller, whatever the concurrency; the row
//! lock makes every other caller wait for that winner's commit and then see its successor.
//! A caller that loses within the grace window gets the winner's successor (sealed under the
//! parent token, see V5); one that presents a rotated token after the window revokes the
//! whole family.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::UserRecord;

/// A refresh token to store: its id, the SHA-256 of its secret, and when it expires.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: Uuid,
    pub hash: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

/// A new session: the family and its first token, plus the login that opened it.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub token: NewToken,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was live and is now rotated; `successor` was stored. `user` is the token's
    /// user as it is now (with current roles).
    Rotated { user: UserRecord, family_id: Uuid },
    /// The token was rotated moments ago (within the grace window): the caller gets the same
    /// successor, unsealed with the token it presented.
    Retried { user: UserRecord, family_id: Uuid, sealed: Vec<u8> },
    /// The token was rotated before the grace window: the family is now revoked.
    ReuseDetected { user_id: Uuid, family_id: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
}

/// One live session as listed to its user.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

/// Opens a session: family, first token and the successful login's history row, all or
/// nothing.
pub async fn start(client: &mut deadpool_postgres::Client, s: &NewSession) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let family = tx
        .prepare_cached(
            "INSERT INTO refresh_families (id, user_id, expires_at, ip_address, user_agent) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    tx.execute(&family, &[&s.family_id, &s.user_id, &s.token.expires_at, &s.ip_address, &s.user_agent]).await?;
    let token = tx
        .prepare_cached(
            "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    tx.execute(&token, &[&s.token.id, &s.token.hash, &s.family_id, &s.user_id, &s.token.expires_at]).await?;
    super::history::record_in(&tx, s.user_id, s.ip_address.as_deref(), s.user_agent.as_deref(), true).await?;
    tx.commit().await
}

/// Rotates the token whose secret hashes to `presented`; see the module documentation.
pub async fn rotate(
    client: &mut deadpool_postgres::Client,
    presented: &[u8],
    successor: &NewToken,
    sealed: &[u8],
    grace: Duration,
    ip_address: Option<&str>,
) -> Result<RotateOutcome, tokio_postgres::Error> {
    // One statement, so one round trip and one implicit transaction: mark the presented token
    // rotated (the compare-and-swap), store its successor, touch the session, and return the
    // user with its current roles.
    let cas = client
        .prepare_cached(
            "WITH cas AS (
                 UPDATE refresh_tokens t SET rotated_at = now(), successor_sealed = $2
                 FROM refresh_families f
                 WHERE t.token_hash = $1 AND f.id = t.family_id
                   AND t.rotated_at IS NULL AND t.revoked_at IS NULL AND f.revoked_at IS NULL
                   AND t.expires_at > now()
                 RETURNING t.id, t.family_id, t.user_id
             ), successor AS (
                 INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, user_id, expires_at)
                 SELECT $3, $4, family_id, id, user_id, $5 FROM cas
             ), touch AS (
                 UPDATE refresh_families SET last_used_at = now(), expires_at = $5
                 FROM cas WHERE refresh_families.id = cas.family_id
             )
             SELECT cas.family_id, u.id, u.username, u.email, u.is_active, u.created_at,
                    ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                          WHERE ur.user_id = u.id ORDER BY r.name) AS roles
             FROM cas JOIN users u ON u.id = cas.user_id",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&presented, &sealed, &successor.id, &successor.hash, &successor.expires_at];
    if let Some(row) = client.query_opt(&cas, &params).await? {
        let family_id: Uuid = row.get(0);
        return Ok(RotateOutcome::Rotated { user: super::users::user_from(&row), family_id });
    }

    let tx = client.transaction().await?;
    let lookup = tx
        .prepare_cached(
            "SELECT t.family_id, t.user_id, t.rotated_at IS NOT NULL AS rotated,
                    t.rotated_at > now() - make_interval(secs => $2) AS in_grace,
                    t.revoked_at IS NOT NULL OR f.revoked_at IS NOT NULL AS revoked,
                    t.successor_sealed,
                    s.id IS NOT NULL AND s.revoked_at IS NULL AS successor_live
             FROM refresh_tokens t
             JOIN refresh_families f ON f.id = t.family_id
             LEFT JOIN refresh_tokens s ON s.parent_id = t.id
             WHERE t.token_hash = $1",
        )
        .await?;
    let Some(row) = tx.query_opt(&lookup, &[&presented, &grace.as_secs_f64()]).await? else {
        return Ok(RotateOutcome::Invalid);
    };
    let (family_id, user_id): (Uuid, Uuid) = (row.get(0), row.get(1));
    let rotated: bool = row.get(2);
    let in_grace: Option<bool> = row.get(3);
    let revoked: bool = row.get(4);
    let sealed: Option<Vec<u8>> = row.get(5);
    let successor_live: bool = row.get(6);
    if revoked || !rotated {
        // Revoked, or never rotated but expired: dead either way.
        return Ok(RotateOutcome::Invalid);
    }
    if in_grace == Some(true)
        && successor_live
        && let Some(sealed) = sealed
    {
        let Some(user) = super::users::get_in(&tx, user_id).await? else { return Ok(RotateOutcome::Invalid) };
        return Ok(RotateOutcome::Retried { user, family_id, sealed });
    }
    revoke_family_in(&tx, family_id, "reuse_detected").await?;
    super::events::record_in(
        &tx,
        "refresh_reuse_detected",
        Some(user_id),
        None,
        ip_address,
        serde_json::json!({ "family_id": family_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(RotateOutcome::ReuseDetected { user_id, family_id })
}

async fn revoke_family_in(
    client: &impl GenericClient,
    family_id: Uuid,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    let family = client
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .await?;
    client.execute(&family, &[&family_id, &reason]).await?;
    let tokens = client
        .prepare_cached("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
        .await?;
    client.execute(&tokens, &[&family_id]).await?;
    Ok(())
}

/// Revokes the family of the token whose secret hashes to `presented` (logout). Returns the
/// family and its user when the token was known.
pub async fn revoke_by_token(
    client: &mut deadpool_postgres::Client,
    presented: &[u8],
) -> Result<Option<(Uuid, Uuid)>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1").await?;
    let Some(row) = tx.query_opt(&stmt, &[&presented]).await? else { return Ok(None) };
    let (family_id, user_id): (Uuid, Uuid) = (row.get(0), row.get(1));
    revoke_family_in(&tx, family_id, "logout").await?;
    tx.commit().await?;
    Ok(Some((family_id, user_id)))
}

/// Revokes one session of `user_id`; false when it is not that user's live session.
pub async fn revoke_one(
    client: &mut deadpool_postgres::Client,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached("SELECT 1 FROM refresh_families WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
        .await?;
    if tx.query_opt(&stmt, &[&family_id, &user_id]).await?.is_none() {
        return Ok(false);
    }
    revoke_family_in(&tx, family_id, "session_revoked").await?;
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn revoke_all_in(
    client: &impl GenericClient,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let families = client
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $3
             WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2)
             RETURNING id",
        )
        .await?;
    let revoked: Vec<Uuid> =
        client.query(&families, &[&user_id, &keep, &reason]).await?.iter().map(|r| r.get(0)).collect();
    let tokens = client
        .prepare_cached(
            "UPDATE refresh_tokens SET revoked_at = now()
             WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR family_id <> $2)",
        )
        .await?;
    client.execute(&tokens, &[&user_id, &keep]).await?;
    Ok(revoked)
}

/// Revokes every session of a user (logout-all); returns how many were live.
pub async fn revoke_all(client: &mut deadpool_postgres::Client, user_id: Uuid) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let n = revoke_all_in(&tx, user_id, None, "logout_all").await?.len() as u64;
    super::events::record_in(
        &tx,
        "logout_all",
        Some(user_id),
        Some(user_id),
        None,
        serde_json::json!({ "sessions": n }),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// The live sessions of a user, most recently used first.
pub async fn list(client: &deadpool_postgres::Client, user_id: Uuid) -> Result<Vec<SessionRow>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT id, created_at, last_used_at, ip_address, user_agent FROM refresh_families
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
             ORDER BY last_used_at DESC LIMIT 1000",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&user_id])
        .await?
        .iter()
        .map(|r| SessionRow {
            id: r.get(0),
            created_at: r.get(1),
            last_used_at: r.get(2),
            ip_address: r.get(3),
            user_agent: r.get(4),
        })
        .collect())
}
