//! `auth-service keys ...`: generate and list signing keys.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
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
}

fn keys_dir(layers: &Layers, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    dir.or_else(|| layers.value("JWT_KEYS_DIR").map(PathBuf::from))
        .context("no key directory: pass --dir or set JWT_KEYS_DIR")
}

pub async fn run(layers: &Layers, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { alg, dir, bits } => {
            let dir = keys_dir(layers, dir)?;
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
    }
    Ok(ExitCode::SUCCESS)
}
