//! Passkeys (WebAuthn): the registered credentials, and the ceremonies between their start and
//! their finish.
//!
//! A ceremony ([`StartCeremony`]) stores the server state webauthn-rs keeps between the options it
//! sends and the browser's answer (the challenge, the credentials allowed), bound to its kind and
//! its user (none for a passwordless sign-in), alive a few minutes. [`TakeCeremony`] is one
//! `DELETE … RETURNING` that matches the id, the kind, the user and the expiry together: a
//! ceremony is used at most once, even by parallel finishes, and a finish for another user or
//! another kind neither gets nor spends it.
//!
//! A credential's `passkey` is webauthn-rs's serialised `Passkey`; [`RecordUse`] stores the one an
//! assertion updated only if its signature counter moved forward (or stays 0 for an
//! authenticator without a counter), so that two assertions checked against the same stored
//! counter cannot both be accepted.

use std::time::Duration;

use deadpool_postgres::Client;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use super::Operation;

/// Stores a ceremony's state.
#[derive(Debug, Clone)]
pub struct StartCeremony {
    pub id: Uuid,
    /// `register`, `authenticate` or `discoverable`.
    pub kind: &'static str,
    pub user_id: Option<Uuid>,
    pub state: Value,
    pub ttl: Duration,
}

impl Operation for StartCeremony {
    type Output = ();

    async fn run(&self, client: &mut Client) -> Result<(), Error> {
        // Expired ceremonies are swept by whoever starts the next one (an index scan, bounded).
        super::run(
            &*client,
            "DELETE FROM webauthn_ceremonies WHERE id IN
               (SELECT id FROM webauthn_ceremonies WHERE expires_at < now() LIMIT 100)",
            &[],
        )
        .await?;
        super::run(
            &*client,
            "INSERT INTO webauthn_ceremonies (id, kind, user_id, state, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
            &[&self.id, &self.kind, &self.user_id, &self.state, &self.ttl.as_secs_f64()],
        )
        .await?;
        Ok(())
    }
}

/// Takes (deletes and returns) a live ceremony of `kind` and `user_id`: `None` when it is
/// unknown, expired, used, of another kind or of another user.
#[derive(Debug, Clone)]
pub struct TakeCeremony {
    pub id: Uuid,
    pub kind: &'static str,
    pub user_id: Option<Uuid>,
}

impl Operation for TakeCeremony {
    type Output = Option<Value>;

    async fn run(&self, client: &mut Client) -> Result<Option<Value>, Error> {
        let row = super::opt(
            &*client,
            "DELETE FROM webauthn_ceremonies
             WHERE id = $1 AND kind = $2 AND user_id IS NOT DISTINCT FROM $3 AND expires_at > now()
             RETURNING state",
            &[&self.id, &self.kind, &self.user_id],
        )
        .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// A stored passkey.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: Uuid,
    pub user_id: Uuid,
    pub credential_id: Vec<u8>,
    pub passkey: Value,
    pub name: String,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, user_id, credential_id, passkey, name, sign_count, backup_eligible, backup_state, \
                       created_at, last_used_at";

fn credential(row: &Row) -> Credential {
    Credential {
        id: row.get("id"),
        user_id: row.get("user_id"),
        credential_id: row.get("credential_id"),
        passkey: row.get("passkey"),
        name: row.get("name"),
        sign_count: row.get("sign_count"),
        backup_eligible: row.get("backup_eligible"),
        backup_state: row.get("backup_state"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
    }
}

/// Stores a new passkey. A credential id registered already (to anyone) is a conflict.
#[derive(Debug, Clone)]
pub struct AddCredential {
    pub id: Uuid,
    pub user_id: Uuid,
    pub credential_id: Vec<u8>,
    pub passkey: Value,
    pub name: String,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

impl Operation for AddCredential {
    type Output = Credential;

    async fn run(&self, client: &mut Client) -> Result<Credential, Error> {
        let row = super::one(
            &*client,
            &format!(
                "INSERT INTO webauthn_credentials
                   (id, user_id, credential_id, passkey, name, sign_count, backup_eligible, backup_state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
            ),
            &[
                &self.id,
                &self.user_id,
                &self.credential_id,
                &self.passkey,
                &self.name,
                &self.sign_count,
                &self.backup_eligible,
                &self.backup_state,
            ],
        )
        .await?;
        Ok(credential(&row))
    }
}

/// A user's passkeys, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct ListCredentials {
    pub user_id: Uuid,
}

impl Operation for ListCredentials {
    type Output = Vec<Credential>;

    async fn run(&self, client: &mut Client) -> Result<Vec<Credential>, Error> {
        let rows = super::all(
            &*client,
            &format!("SELECT {COLUMNS} FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id"),
            &[&self.user_id],
        )
        .await?;
        Ok(rows.iter().map(credential).collect())
    }
}

/// The passkey with this credential id, whoever it belongs to.
#[derive(Debug, Clone)]
pub struct FindCredential {
    pub credential_id: Vec<u8>,
}

impl Operation for FindCredential {
    type Output = Option<Credential>;

    async fn run(&self, client: &mut Client) -> Result<Option<Credential>, Error> {
        let row = super::opt(
            &*client,
            &format!("SELECT {COLUMNS} FROM webauthn_credentials WHERE credential_id = $1"),
            &[&self.credential_id],
        )
        .await?;
        Ok(row.as_ref().map(credential))
    }
}

/// Stores a passkey after a successful assertion, if its counter moved forward: `false` when
/// another assertion got there first (or the credential is gone).
#[derive(Debug, Clone)]
pub struct RecordUse {
    pub id: Uuid,
    pub passkey: Value,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

impl Operation for RecordUse {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let n = super::run(
            &*client,
            "UPDATE webauthn_credentials
             SET passkey = $2, sign_count = $3, backup_eligible = $4, backup_state = $5, last_used_at = now()
             WHERE id = $1 AND (sign_count < $3 OR (sign_count = 0 AND $3 = 0))",
            &[&self.id, &self.passkey, &self.sign_count, &self.backup_eligible, &self.backup_state],
        )
        .await?;
        Ok(n == 1)
    }
}

/// Deletes one of a user's passkeys: `false` when the user has none with this id.
#[derive(Debug, Clone, Copy)]
pub struct DeleteCredential {
    pub user_id: Uuid,
    pub id: Uuid,
}

impl Operation for DeleteCredential {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let n = super::run(
            &*client,
            "DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2",
            &[&self.id, &self.user_id],
        )
        .await?;
        Ok(n == 1)
    }
}
