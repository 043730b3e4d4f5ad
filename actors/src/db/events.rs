//! Security events, kept for the admin endpoint.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

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

/// Records one event, inside whatever transaction `client` is.
pub async fn record_in(
    client: &impl GenericClient,
    event_type: &str,
    user_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    ip: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO security_events (event_type, user_id, actor_id, ip_address, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    client.execute(&stmt, &[&event_type, &user_id, &actor_id, &ip, &detail]).await?;
    Ok(())
}

/// One page of events, newest first, optionally filtered by type and user, with the total.
pub async fn page(
    client: &deadpool_postgres::Client,
    event_type: Option<&str>,
    user_id: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<EventRow>, i64), tokio_postgres::Error> {
    let filter = "($1::text IS NULL OR event_type = $1) AND ($2::uuid IS NULL OR user_id = $2)";
    let rows = client
        .prepare_cached(&format!(
            "SELECT id, created_at, event_type, user_id, actor_id, ip_address, detail FROM security_events
             WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .await?;
    let count = client.prepare_cached(&format!("SELECT count(*) FROM security_events WHERE {filter}")).await?;
    let items = client
        .query(&rows, &[&event_type, &user_id, &limit, &offset])
        .await?
        .iter()
        .map(|r| EventRow {
            id: r.get(0),
            created_at: r.get(1),
            event_type: r.get(2),
            user_id: r.get(3),
            actor_id: r.get(4),
            ip_address: r.get(5),
            detail: r.get(6),
        })
        .collect();
    let total: i64 = client.query_one(&count, &[&event_type, &user_id]).await?.get(0);
    Ok((items, total))
}
