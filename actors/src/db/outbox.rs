//! The mail outbox: mail written in the same transaction as the change that needs it, and
//! delivered later by the Mailer. A change that needs a mail calls [`enqueue`] on its own
//! transaction, so the mail exists exactly when the change committed.

use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

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
