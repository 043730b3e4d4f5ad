//! Login history: one row per login attempt of a known user.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub login_time: OffsetDateTime,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub successful: bool,
}

pub(crate) async fn record_in(
    client: &impl GenericClient,
    user_id: Uuid,
    ip: Option<&str>,
    user_agent: Option<&str>,
    successful: bool,
) -> Result<(), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO login_history (user_id, ip_address, user_agent, successful) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    client.execute(&stmt, &[&user_id, &ip, &user_agent, &successful]).await?;
    Ok(())
}

/// Records a failed login: a `login_failed` security event, and for a known user a history
/// row too. One statement either way, so that a failure costs the same whether or not the
/// user exists.
pub async fn record_failure(
    client: &deadpool_postgres::Client,
    user_id: Option<Uuid>,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "WITH history AS (
                 INSERT INTO login_history (user_id, ip_address, user_agent, successful)
                 SELECT $1, $2, $3, false WHERE $1::uuid IS NOT NULL
             )
             INSERT INTO security_events (event_type, user_id, ip_address, detail)
             VALUES ('login_failed', $1, $2, CASE WHEN $1::uuid IS NULL THEN '{\"unknown_user\": true}'::jsonb ELSE '{}'::jsonb END)",
        )
        .await?;
    client.execute(&stmt, &[&user_id, &ip, &user_agent]).await?;
    Ok(())
}

/// One page of a user's history, newest first, and the total count.
pub async fn page(
    client: &deadpool_postgres::Client,
    user_id: Uuid,
    limit: i64,
    offset: i64,
) -> Result<(Vec<HistoryRow>, i64), tokio_postgres::Error> {
    let rows = client
        .prepare_cached(
            "SELECT login_time, ip_address, user_agent, successful FROM login_history
             WHERE user_id = $1 ORDER BY login_time DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .await?;
    let count = client.prepare_cached("SELECT count(*) FROM login_history WHERE user_id = $1").await?;
    let items = client
        .query(&rows, &[&user_id, &limit, &offset])
        .await?
        .iter()
        .map(|r| HistoryRow { login_time: r.get(0), ip_address: r.get(1), user_agent: r.get(2), successful: r.get(3) })
        .collect();
    let total: i64 = client.query_one(&count, &[&user_id]).await?.get(0);
    Ok((items, total))
}
