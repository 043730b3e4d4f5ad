//! `auth-service mfa rekey`: re-seals every stored TOTP secret under the first key of
//! `MFA_ENCRYPTION_KEYS`, the step of a key rotation that lets the old keys go (see
//! docs/OPERATIONS.md, "Rotating MFA_ENCRYPTION_KEYS").
//!
//! Rows already under the first key are left alone; a row that changed while the command ran
//! (a new enrolment, sealed by an instance) is skipped. A row no key of the ring opens stops the
//! command with its user id, after the rows before it were re-sealed: it can be run again.

use std::process::ExitCode;

use anyhow::bail;
use auth_actors::db::totp::{ListSealed, Reseal};
use auth_actors::db::{self, Operation};
use clap::Subcommand;

use crate::config::Layers;
use crate::sealing::KeyRing;

#[derive(Subcommand)]
pub enum MfaCommand {
    /// Re-seal every TOTP secret under the first key of MFA_ENCRYPTION_KEYS.
    Rekey,
}

fn db_error(e: tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!("database: {}", db::error_chain(&e))
}

pub async fn run(layers: &Layers, cmd: MfaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MfaCommand::Rekey => rekey(layers).await,
    }
}

async fn rekey(layers: &Layers) -> anyhow::Result<ExitCode> {
    let Some(raw) = layers.value("MFA_ENCRYPTION_KEYS").map(str::trim).filter(|v| !v.is_empty()) else {
        bail!("missing setting MFA_ENCRYPTION_KEYS");
    };
    let ring = KeyRing::parse(raw).map_err(|e| anyhow::anyhow!("invalid MFA_ENCRYPTION_KEYS: {e}"))?;
    let mut client = super::migrate::connect_pooled(layers).await?;
    db::check_schema(&client).await?;
    let rows = ListSealed.run(&mut client).await.map_err(db_error)?;
    let (mut resealed, mut current, mut skipped) = (0usize, 0usize, 0usize);
    for (user_id, sealed, kid) in rows {
        if kid == ring.current_kid() {
            current += 1;
            continue;
        }
        let plain = ring
            .open(&kid, user_id.as_bytes(), &sealed)
            .map_err(|e| anyhow::anyhow!("the TOTP secret of user {user_id} cannot be opened: {e}"))?;
        let (new, key_id) = ring.seal(user_id.as_bytes(), &plain).map_err(|e| anyhow::anyhow!("cannot seal: {e}"))?;
        if (Reseal { user_id, old: sealed, new, key_id }).run(&mut client).await.map_err(db_error)? {
            resealed += 1;
        } else {
            skipped += 1;
        }
    }
    println!(
        "re-sealed {resealed} TOTP secret(s) under key {:?}; {current} already under it; {skipped} changed meanwhile (already current)",
        ring.current_kid()
    );
    Ok(ExitCode::SUCCESS)
}
