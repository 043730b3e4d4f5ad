//! The mail outbox: mail written in the same transaction as the change that needs it, and
//! delivered later by the Mailer. A change that needs a mail calls [`enqueue`] on its own
//! transaction, so the mail exists exactly when the change committed.
//!
//! The Mailer's side: [`LeaseDue`] takes due mail under a lease, then [`MarkSent`] or
//! [`RecordFailure`] settles each; [`Stats`] feeds the outbox metrics.

use deadpool_postgres::{Client, GenericClient};
use tokio_postgres::Error;
use uuid::Uuid;

use super::Operation;

/// A rendered mail, ready for the outbox. The bodies may carry a one-time link: they are kept
/// only until the mail is sent or given up, and never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// What the mail is for (`verify_email`, `password_reset`, ...): a label for metrics and
    /// for operators inspecting the outbox, never shown to the recipient.
    pub kind: &'static str,
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Writes `mail` to the outbox within the caller's transaction, due now. Returns its id, which
/// is also the left part of its `Message-ID`.
pub async fn enqueue(client: &impl GenericClient, mail: &OutgoingMail) -> Result<Uuid, Error> {
    let id = Uuid::now_v7();
    super::run(
        client,
        "INSERT INTO mail_outbox (id, kind, recipient, subject, body_text, body_html) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&id, &mail.kind, &mail.recipient, &mail.subject, &mail.text, &mail.html],
    )
    .await?;
    Ok(id)
}

/// A mail the Mailer leased for one delivery attempt.
#[derive(Clone)]
pub struct LeasedMail {
    pub id: Uuid,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

impl std::fmt::Debug for LeasedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedMail").field("id", &self.id).field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Leases up to `limit` due mails for `lease`: pending, due, and not leased by anyone else
/// (or leased by someone whose lease ran out: an instance that crashed mid-send, so the mail
/// goes out again — at least once). `FOR UPDATE SKIP LOCKED` lets several instances lease at
/// the same time without waiting on or taking each other's rows.
#[derive(Debug, Clone, Copy)]
pub struct LeaseDue {
    pub limit: i64,
    pub lease: std::time::Duration,
}

impl Operation for LeaseDue {
    type Output = Vec<LeasedMail>;

    async fn run(&self, client: &mut Client) -> Result<Vec<LeasedMail>, Error> {
        let seconds = self.lease.as_secs_f64();
        let rows = super::all(
            &*client,
            "WITH due AS (
                 SELECT id FROM mail_outbox
                 WHERE status = 'pending' AND next_attempt_at <= now()
                   AND (leased_until IS NULL OR leased_until <= now())
                 ORDER BY next_attempt_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE mail_outbox m SET leased_until = now() + make_interval(secs => $2)
             FROM due WHERE m.id = due.id
             RETURNING m.id, m.kind, m.recipient, m.subject, m.body_text, m.body_html, m.attempts",
            &[&self.limit, &seconds],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| LeasedMail {
                id: r.get(0),
                kind: r.get(1),
                recipient: r.get(2),
                subject: r.get(3),
                text: r.get::<_, Option<String>>(4).unwrap_or_default(),
                html: r.get::<_, Option<String>>(5).unwrap_or_default(),
                attempts: r.get(6),
            })
            .collect())
    }
}

/// Marks a mail sent: its bodies (which may carry a one-time link) are cleared at once.
#[derive(Debug, Clone, Copy)]
pub struct MarkSent {
    pub id: Uuid,
}

impl Operation for MarkSent {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let n = super::run(
            &*client,
            "UPDATE mail_outbox SET status = 'sent', attempts = attempts + 1, finished_at = now(),
                 leased_until = NULL, last_error = NULL, body_text = NULL, body_html = NULL
             WHERE id = $1 AND status = 'pending'",
            &[&self.id],
        )
        .await?;
        Ok(n == 1)
    }
}

/// Records a failed attempt: either the mail is due again after `retry_in`, or (`dead`) it is
/// given up on, its bodies cleared. `error` is the reason for operators: it must carry no
/// secret and no body.
#[derive(Debug, Clone)]
pub struct RecordFailure {
    pub id: Uuid,
    pub error: String,
    /// `None`: dead-letter it now.
    pub retry_in: Option<std::time::Duration>,
}

impl Operation for RecordFailure {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let n = match self.retry_in {
            Some(wait) => {
                super::run(
                    &*client,
                    "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $2, leased_until = NULL,
                         next_attempt_at = now() + make_interval(secs => $3)
                     WHERE id = $1 AND status = 'pending'",
                    &[&self.id, &self.error, &wait.as_secs_f64()],
                )
                .await?
            }
            None => {
                super::run(
                    &*client,
                    "UPDATE mail_outbox SET status = 'dead', attempts = attempts + 1, last_error = $2,
                         leased_until = NULL, finished_at = now(), body_text = NULL, body_html = NULL
                     WHERE id = $1 AND status = 'pending'",
                    &[&self.id, &self.error],
                )
                .await?
            }
        };
        Ok(n == 1)
    }
}

/// The outbox at a glance, for the metrics: mails waiting and how long the oldest has.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutboxStats {
    pub pending: i64,
    /// Seconds since the oldest pending mail was written; 0 when none waits.
    pub oldest_pending_secs: f64,
}

/// Reads [`OutboxStats`] (one index scan over the pending rows).
#[derive(Debug, Clone, Copy)]
pub struct Stats;

impl Operation for Stats {
    type Output = OutboxStats;

    async fn run(&self, client: &mut Client) -> Result<OutboxStats, Error> {
        let row = super::one(
            &*client,
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
             FROM mail_outbox WHERE status = 'pending'",
            &[],
        )
        .await?;
        Ok(OutboxStats { pending: row.get(0), oldest_pending_secs: row.get::<_, f64>(1).max(0.0) })
    }
}
