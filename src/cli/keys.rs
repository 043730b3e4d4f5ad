//! `auth-service keys ...`: generate, list, rotate, remove and revoke signing keys.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use auth_actors::db::Operation as _;
use auth_actors::db::clients;
use auth_actors::db::events::{self, SecurityEvent};
use auth_actors::keys::{self, KeyAlg};
use clap::Subcommand;

use crate::config::Layers;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a key into the key directory. The first key of an empty directory becomes
    /// active; later ones start as `next`.
    Generate {
        #[arg(long, default_value = "RS256")]
        alg: KeyAlg,
        /// Key directory (default: JWT_KEYS_DIR).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// RSA modulus size.
        #[arg(long, default_value_t = 2048)]
        bits: usize,
    },
    /// List the keys of the key directory with their states.
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Activate the oldest `next` key (once it has been published long enough), retire the
    /// active key, and remove retired keys whose tokens have all expired.
    Rotate {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove a retired key from the JWKS (refused while its tokens may still be live).
    Remove {
        /// Key id. May start with `-` (kids are base64url thumbprints).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Emergency: unpublish a key at once so its tokens stop verifying. Revoking the active key
    /// activates the newest `next` key immediately.
    Revoke {
        /// Key id. May start with `-` (kids are base64url thumbprints).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The timings of the lifecycle rules. A retired key must stay published until every token it
/// signed has expired: `ACCESS_TOKEN_TTL` for the service's own tokens, but an OAuth client may
/// be registered with a longer `access_token_ttl` (up to a day). The longest registered one is
/// read from the database; when it cannot be read, the longest a client may register is
/// assumed, so a key is kept too long rather than removed under live tokens.
async fn lifecycle(layers: &Layers) -> anyhow::Result<keys::Lifecycle> {
    let own = layers.duration_value("ACCESS_TOKEN_TTL")?;
    let clients = match longest_client_ttl(layers).await {
        Ok(ttl) => ttl,
        Err(e) => {
            eprintln!(
                "warning: the clients' token lifetimes could not be read ({e}); assuming the longest a client may \
                 register, {} s",
                crate::flows::tokens::MAX_ACCESS_TOKEN_TTL.as_secs()
            );
            crate::flows::tokens::MAX_ACCESS_TOKEN_TTL
        }
    };
    Ok(keys::Lifecycle {
        jwks_max_age: layers.duration_value("JWKS_MAX_AGE")?,
        poll_interval: layers.duration_value("KEYS_POLL_INTERVAL")?,
        access_ttl: own.max(clients),
        clock_skew: layers.duration_value("CLOCK_SKEW")?,
    })
}

async fn longest_client_ttl(layers: &Layers) -> anyhow::Result<std::time::Duration> {
    let mut client = super::migrate::connect_pooled(layers).await?;
    let longest = clients::LongestAccessTokenTtl.run(&mut client).await?;
    Ok(std::time::Duration::from_secs(longest.map_or(0, |s| s.max(0) as u64)))
}

/// Prints what changed and records it as security events when the database is reachable.
async fn report(layers: &Layers, report: keys::LifecycleReport) {
    let mut events = Vec::new();
    if let Some(kid) = &report.activated {
        println!("activated {kid}");
        events.push(SecurityEvent::KeyActivated { kid: kid.clone() });
    }
    if let Some(kid) = &report.retired {
        println!("retired {kid} (published until its tokens have expired)");
        events.push(SecurityEvent::KeyRetired { kid: kid.clone() });
    }
    for kid in &report.removed {
        println!("removed {kid}");
        events.push(SecurityEvent::KeyRemoved { kid: kid.clone() });
    }
    if let Some(kid) = &report.revoked {
        println!("revoked {kid}: unpublished now; tokens it signed no longer verify");
        events.push(SecurityEvent::KeyRevoked { kid: kid.clone() });
    }
    println!("running instances pick this up within KEYS_POLL_INTERVAL, or at once on SIGHUP");
    if events.is_empty() {
        return;
    }
    let client = match super::migrate::connect_pooled(layers).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: key events not recorded (database unavailable: {e})");
            return;
        }
    };
    for event in events {
        if let Err(e) = events::record_in(&client, &event, None).await {
            eprintln!("warning: key event not recorded: {e}");
        }
    }
}

fn keys_dir(layers: &Layers, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    dir.or_else(|| layers.value("JWT_KEYS_DIR").map(PathBuf::from))
        .context("no key directory: pass --dir or set JWT_KEYS_DIR")
}

pub async fn run(layers: &Layers, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { alg, dir, bits } => {
            let dir = keys_dir(layers, dir)?;
            // A key written into a directory others can write or read is no secret: refuse it
            // as the server would refuse to load it (the directory is created 0700, each key
            // 0600).
            for finding in keys::check_permissions(&dir, layers.keys_permissions()?)? {
                eprintln!("warning: {finding} (JWT_KEYS_ALLOW_INSECURE_PERMISSIONS=true)");
            }
            let key = tokio::task::spawn_blocking(move || keys::generate_key(&dir, alg, bits)).await??;
            println!(
                "generated {} key {} ({}) at {}",
                key.alg.as_str(),
                key.kid,
                key.state.as_str(),
                key.path.display()
            );
        }
        KeysCommand::List { dir } => {
            let dir = keys_dir(layers, dir)?;
            let meta = keys::read_metadata(&dir)?;
            println!("{:<44} {:<6} {:<8} {:<25} ACTIVATED", "KID", "ALG", "STATE", "CREATED");
            for k in meta.keys {
                let fmt = |t: Option<time::OffsetDateTime>| {
                    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "{:<44} {:<6} {:<8} {:<25} {}",
                    k.kid,
                    k.alg.as_str(),
                    k.state.as_str(),
                    fmt(Some(k.created_at)),
                    fmt(k.activated_at)
                );
            }
        }
        KeysCommand::Rotate { dir } => {
            let dir = keys_dir(layers, dir)?;
            let r = keys::rotate(&dir, &lifecycle(layers).await?, time::OffsetDateTime::now_utc())?;
            report(layers, r).await;
        }
        KeysCommand::Remove { kid, dir } => {
            let dir = keys_dir(layers, dir)?;
            let r = keys::remove(&dir, &kid, &lifecycle(layers).await?, time::OffsetDateTime::now_utc())?;
            report(layers, r).await;
        }
        KeysCommand::Revoke { kid, dir } => {
            let dir = keys_dir(layers, dir)?;
            let r = keys::revoke(&dir, &kid, time::OffsetDateTime::now_utc())?;
            report(layers, r).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
