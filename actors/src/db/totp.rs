//! TOTP authenticators (`mfa_totp`) and their recovery codes (`mfa_recovery_codes`).
//!
//! The shared secret arrives sealed (the service seals and opens it; this module never sees it
//! in the clear). An authenticator is set up in two steps: [`StartEnrolment`] stores a new
//! sealed secret, unconfirmed (replacing an unconfirmed one, never a confirmed one), and
//! [`Confirm`] marks it confirmed with the step of the code that proved it, replaces the
//! recovery codes, records `mfa_enrolled` and enqueues the notice, in one transaction.
//!
//! Every accepted code moves `last_step` forward with one `UPDATE ... WHERE last_step < $step`
//! ([`AcceptStep`]), so a code (and every code of an earlier step) is accepted once, even by two
//! requests at the same moment. A recovery code is spent by one `UPDATE ... WHERE used_at IS
//! NULL` ([`UseRecoveryCode`]): one caller wins.

use deadpool_postgres::{Client, GenericClient};
use tokio_postgres::Error;
use uuid::Uuid;

use super::Operation;
use super::events::{self, SecurityEvent};
use super::outbox::{self, OutgoingMail};

/// A user's authenticator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRow {
    pub secret_sealed: Vec<u8>,
    pub key_id: String,
    pub confirmed: bool,
    pub last_step: i64,
}

fn row_of(r: &tokio_postgres::Row) -> TotpRow {
    TotpRow {
        secret_sealed: r.get(0),
        key_id: r.get(1),
        confirmed: r.get::<_, Option<time::OffsetDateTime>>(2).is_some(),
        last_step: r.get(3),
    }
}

/// The authenticator of one user, confirmed or not.
#[derive(Debug, Clone, Copy)]
pub struct Get {
    pub user_id: Uuid,
}

impl Operation for Get {
    type Output = Option<TotpRow>;

    async fn run(&self, client: &mut Client) -> Result<Option<TotpRow>, Error> {
        let row = super::opt(
            &*client,
            "SELECT secret_sealed, key_id, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1",
            &[&self.user_id],
        )
        .await?;
        Ok(row.as_ref().map(row_of))
    }
}

/// Stores a new, unconfirmed authenticator: `false` (nothing written) when the user has a
/// confirmed one.
#[derive(Debug, Clone)]
pub struct StartEnrolment {
    pub user_id: Uuid,
    pub secret_sealed: Vec<u8>,
    pub key_id: String,
}

impl Operation for StartEnrolment {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let n = super::run(
            &*client,
            "INSERT INTO mfa_totp (user_id, secret_sealed, key_id) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE
                SET secret_sealed = EXCLUDED.secret_sealed, key_id = EXCLUDED.key_id, created_at = now(),
                    last_step = -1
                WHERE mfa_totp.confirmed_at IS NULL",
            &[&self.user_id, &self.secret_sealed, &self.key_id],
        )
        .await?;
        Ok(n == 1)
    }
}

/// Inserts `digests` as the user's recovery codes, after deleting the old set.
async fn replace_codes(client: &impl GenericClient, user_id: Uuid, digests: &[Vec<u8>]) -> Result<(), Error> {
    super::run(client, "DELETE FROM mfa_recovery_codes WHERE user_id = $1", &[&user_id]).await?;
    super::run(
        client,
        "INSERT INTO mfa_recovery_codes (user_id, digest) SELECT $1, d FROM unnest($2::bytea[]) AS d",
        &[&user_id, &digests],
    )
    .await?;
    Ok(())
}

/// Confirms the unconfirmed authenticator whose sealed secret is `secret_sealed` (the one the
/// code was checked against) at `step`; replaces the recovery codes with `recovery_digests`,
/// records `mfa_enrolled` and enqueues `notice`, all in one transaction. `false` when there is
/// no such unconfirmed authenticator (confirmed meanwhile, restarted, removed).
#[derive(Debug, Clone)]
pub struct Confirm {
    pub user_id: Uuid,
    pub secret_sealed: Vec<u8>,
    pub step: i64,
    pub recovery_digests: Vec<Vec<u8>>,
    pub notice: Option<OutgoingMail>,
    pub ip: Option<String>,
}

impl Operation for Confirm {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let tx = client.transaction().await?;
        let n = super::run(
            &tx,
            "UPDATE mfa_totp SET confirmed_at = now(), last_step = $3
             WHERE user_id = $1 AND secret_sealed = $2 AND confirmed_at IS NULL AND last_step < $3",
            &[&self.user_id, &self.secret_sealed, &self.step],
        )
        .await?;
        if n != 1 {
            return Ok(false);
        }
        replace_codes(&tx, self.user_id, &self.recovery_digests).await?;
        let event = SecurityEvent::MfaEnrolled { user: self.user_id, method: "totp", credential: None };
        events::record_in(&tx, &event, self.ip.as_deref()).await?;
        if let Some(mail) = &self.notice {
            outbox::enqueue(&tx, mail).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// Accepts a code of time step `step` for the user's confirmed authenticator: `true` for
/// exactly one caller, and only if no code of this or a later step was accepted before.
#[derive(Debug, Clone, Copy)]
pub struct AcceptStep {
    pub user_id: Uuid,
    pub step: i64,
}

impl Operation for AcceptStep {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let n = super::run(
            &*client,
            "UPDATE mfa_totp SET last_step = $2
             WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2",
            &[&self.user_id, &self.step],
        )
        .await?;
        Ok(n == 1)
    }
}

/// Spends the recovery code whose digest is `digest`: the codes left, or `None` when it is not
/// one of the user's unused codes. Records `recovery_code_used` in the same transaction.
#[derive(Debug, Clone)]
pub struct UseRecoveryCode {
    pub user_id: Uuid,
    pub digest: Vec<u8>,
    pub ip: Option<String>,
}

impl Operation for UseRecoveryCode {
    type Output = Option<i64>;

    async fn run(&self, client: &mut Client) -> Result<Option<i64>, Error> {
        let tx = client.transaction().await?;
        let n = super::run(
            &tx,
            "UPDATE mfa_recovery_codes SET used_at = now() WHERE user_id = $1 AND digest = $2 AND used_at IS NULL",
            &[&self.user_id, &self.digest],
        )
        .await?;
        if n != 1 {
            return Ok(None);
        }
        let remaining: i64 = super::one(
            &tx,
            "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
            &[&self.user_id],
        )
        .await?
        .get(0);
        let event = SecurityEvent::RecoveryCodeUsed { user: self.user_id, remaining };
        events::record_in(&tx, &event, self.ip.as_deref()).await?;
        tx.commit().await?;
        Ok(Some(remaining))
    }
}

/// Replaces the recovery codes of a user with a confirmed authenticator: `false` (nothing
/// written) when it has none.
#[derive(Debug, Clone)]
pub struct ReplaceRecoveryCodes {
    pub user_id: Uuid,
    pub digests: Vec<Vec<u8>>,
}

impl Operation for ReplaceRecoveryCodes {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let tx = client.transaction().await?;
        let confirmed = super::opt(
            &tx,
            "SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL FOR UPDATE",
            &[&self.user_id],
        )
        .await?
        .is_some();
        if !confirmed {
            return Ok(false);
        }
        replace_codes(&tx, self.user_id, &self.digests).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// What removing second factors removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// A confirmed TOTP authenticator (its recovery codes went with it).
    pub totp: bool,
    /// The passkeys removed (only when asked to remove them).
    pub passkeys: Vec<Uuid>,
}

impl Removed {
    pub fn any(&self) -> bool {
        self.totp || !self.passkeys.is_empty()
    }
}

/// Removes the user's TOTP authenticator (confirmed or not) and its recovery codes, and with
/// `passkeys` every passkey too; records `mfa_removed` (`by` the admin, or the user) for each
/// factor removed, and enqueues `notice` when anything was — one transaction. `None` when the
/// user does not exist.
#[derive(Debug, Clone)]
pub struct Remove {
    pub user_id: Uuid,
    pub passkeys: bool,
    pub by: Option<Uuid>,
    pub notice: Option<OutgoingMail>,
    pub ip: Option<String>,
}

impl Operation for Remove {
    type Output = Option<Removed>;

    async fn run(&self, client: &mut Client) -> Result<Option<Removed>, Error> {
        let tx = client.transaction().await?;
        if super::opt(&tx, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&self.user_id]).await?.is_none() {
            return Ok(None);
        }
        let totp = super::opt(
            &tx,
            "DELETE FROM mfa_totp WHERE user_id = $1 RETURNING confirmed_at IS NOT NULL",
            &[&self.user_id],
        )
        .await?
        .is_some_and(|r| r.get::<_, bool>(0));
        super::run(&tx, "DELETE FROM mfa_recovery_codes WHERE user_id = $1", &[&self.user_id]).await?;
        let passkeys = if self.passkeys {
            super::all(&tx, "DELETE FROM webauthn_credentials WHERE user_id = $1 RETURNING id", &[&self.user_id])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            Vec::new()
        };
        let removed = Removed { totp, passkeys };
        let ip = self.ip.as_deref();
        if removed.totp {
            let event = SecurityEvent::MfaRemoved { user: self.user_id, method: "totp", credential: None, by: self.by };
            events::record_in(&tx, &event, ip).await?;
        }
        for id in &removed.passkeys {
            let event = SecurityEvent::MfaRemoved {
                user: self.user_id,
                method: "webauthn",
                credential: Some(*id),
                by: self.by,
            };
            events::record_in(&tx, &event, ip).await?;
        }
        if removed.any()
            && let Some(mail) = &self.notice
        {
            outbox::enqueue(&tx, mail).await?;
        }
        tx.commit().await?;
        Ok(Some(removed))
    }
}

/// What a user has set up, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub totp: bool,
    pub recovery_codes_remaining: i64,
    pub webauthn_credentials: i64,
}

/// The second factors of one user, counted.
#[derive(Debug, Clone, Copy)]
pub struct GetSummary {
    pub user_id: Uuid,
}

impl Operation for GetSummary {
    type Output = Summary;

    async fn run(&self, client: &mut Client) -> Result<Summary, Error> {
        let row = super::one(
            &*client,
            "SELECT
                EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL),
                (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL),
                (SELECT count(*) FROM webauthn_credentials WHERE user_id = $1)",
            &[&self.user_id],
        )
        .await?;
        Ok(Summary { totp: row.get(0), recovery_codes_remaining: row.get(1), webauthn_credentials: row.get(2) })
    }
}

/// Every stored authenticator (for re-sealing under a new key): user, sealed secret, key id.
#[derive(Debug, Clone, Copy)]
pub struct ListSealed;

impl Operation for ListSealed {
    type Output = Vec<(Uuid, Vec<u8>, String)>;

    async fn run(&self, client: &mut Client) -> Result<Self::Output, Error> {
        let rows =
            super::all(&*client, "SELECT user_id, secret_sealed, key_id FROM mfa_totp ORDER BY user_id", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

/// Replaces one sealed secret with its re-sealed form, if it is still the one that was read:
/// `false` when it changed meanwhile (a new enrolment), which then needs no re-sealing.
#[derive(Debug, Clone)]
pub struct Reseal {
    pub user_id: Uuid,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    pub key_id: String,
}

impl Operation for Reseal {
    type Output = bool;

    async fn run(&self, client: &mut Client) -> Result<bool, Error> {
        let n = super::run(
            &*client,
            "UPDATE mfa_totp SET secret_sealed = $3, key_id = $4 WHERE user_id = $1 AND secret_sealed = $2",
            &[&self.user_id, &self.old, &self.new, &self.key_id],
        )
        .await?;
        Ok(n == 1)
    }
}
