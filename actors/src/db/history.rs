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
    super::run(
        client,
        "INSERT INTO login_history (user_id, ip_address, user_agent, successful) VALUES ($1, $2, $3, $4)",
        &[&user_id, &ip, &user_agent, &successful],
    )
    .await?;
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

    async fn run(&self, client: &mut Client) -> Result<(), Error> {
        let event = SecurityEvent::LoginFailed { user: self.user_id };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&self.user_id, &self.ip, &self.user_agent, &event.event_type(), &event.detail()];
        super::run(
            &*client,
            "WITH history AS (
                     INSERT INTO login_history (user_id, ip_address, user_agent, successful)
                     SELECT $1, $2, $3, false WHERE $1::uuid IS NOT NULL
                 )
                 INSERT INTO security_events (event_type, user_id, ip_address, detail) VALUES ($4, $1, $2, $5)",
            &params,
        )
        .await?;
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

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let page = super::Paged {
            columns: "login_time, ip_address, user_agent, successful",
            from: "login_history WHERE user_id = $1",
            order: "login_time DESC, id DESC",
            limit: self.limit,
            offset: self.offset,
        };
        page.fetch(&*client, &[&self.user_id], |r| HistoryRow {
            login_time: r.get(0),
            ip_address: r.get(1),
            user_agent: r.get(2),
            successful: r.get(3),
        })
        .await
    }
}
