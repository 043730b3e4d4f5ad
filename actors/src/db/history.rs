//! Login history: one row per login attempt of a known user.

use deadpool_postgres::{Client, GenericClient};
use time::OffsetDateTime;
use tokio_postgres::Error;
use uuid::Uuid;

use super::Operation;
use super::events::SecurityEvent;

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
) -> Result<(), Error> {
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
#[derive(Debug, Clone)]
pub struct RecordFailure {
    pub user_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Operation for RecordFailure {
    type Output = ();
    const NAME: &'static str = "record_login_failure";

    async fn run(&self, client: &mut Client) -> Result<(), Error> {
        let event = SecurityEvent::LoginFailed { user: self.user_id };
        let stmt = client
            .prepare_cached(
                "WITH history AS (
                     INSERT INTO login_history (user_id, ip_address, user_agent, successful)
                     SELECT $1, $2, $3, false WHERE $1::uuid IS NOT NULL
                 )
                 INSERT INTO security_events (event_type, user_id, ip_address, detail) VALUES ($4, $1, $2, $5)",
            )
            .await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&self.user_id, &self.ip, &self.user_agent, &event.event_type(), &event.detail()];
        client.execute(&stmt, &params).await?;
        Ok(())
    }
}

/// One page of a user's history, newest first, and the total count.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub user_id: Uuid,
    pub limit: i64,
    pub offset: i64,
}

impl Operation for Page {
    type Output = (Vec<HistoryRow>, i64);
    const NAME: &'static str = "history";

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let rows = client
            .prepare_cached(
                "SELECT login_time, ip_address, user_agent, successful FROM login_history
                 WHERE user_id = $1 ORDER BY login_time DESC, id DESC LIMIT $2 OFFSET $3",
            )
            .await?;
        let count = client.prepare_cached("SELECT count(*) FROM login_history WHERE user_id = $1").await?;
        let items = client
            .query(&rows, &[&self.user_id, &self.limit, &self.offset])
            .await?
            .iter()
            .map(|r| HistoryRow {
                login_time: r.get(0),
                ip_address: r.get(1),
                user_agent: r.get(2),
                successful: r.get(3),
            })
            .collect();
        let total: i64 = client.query_one(&count, &[&self.user_id]).await?.get(0);
        Ok((items, total))
    }
}
