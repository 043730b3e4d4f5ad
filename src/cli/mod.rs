//! The command line: one subcommand per file. Every command reads the same layered
//! configuration (`--config-dir`, default `config/`, then the environment) and needs only the
//! settings it uses. Errors end the process with a non-zero status and one line on stderr.

mod clients;
mod hash;
mod keys;
mod mfa;
mod migrate;
mod serve;
mod superuser;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Layers;

#[derive(Parser)]
#[command(name = "auth-service", version, about = "JWT authentication server")]
struct Cli {
    /// Directory of *.toml config files, read in lexical order before the environment.
    #[arg(long, env = "CONFIG_DIR", default_value = "config", global = true)]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate config, keys and dependencies, then serve the API.
    Serve,
    /// Apply pending database migrations (idempotent).
    Migrate,
    /// Insert the default roles that are missing (idempotent).
    SeedRoles,
    /// Create an admin user (or, with --promote-existing, give an existing account the admin
    /// role after checking its password). The password comes from SUPERUSER_PASSWORD or
    /// standard input, never from the command line.
    CreateSuperuser(superuser::Args),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Password-hash tools.
    #[command(subcommand)]
    Hash(hash::HashCommand),
    /// Second factors: re-seal TOTP secrets after a key rotation.
    #[command(subcommand)]
    Mfa(mfa::MfaCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let layers = match Layers::load(&cli.config_dir, std::env::vars()) {
        Ok(l) => l,
        Err(e) => return fail(&e.to_string()),
    };
    // Blocking threads run RSA signatures (sub-millisecond each): a few suffice, and each
    // thread costs memory.
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(8).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(&layers).await,
            Command::Migrate => migrate::migrate(&layers).await,
            Command::SeedRoles => migrate::seed_roles(&layers).await,
            Command::CreateSuperuser(args) => superuser::run(&layers, args).await,
            Command::Keys(cmd) => keys::run(&layers, cmd).await,
            Command::Clients(cmd) => clients::run(&layers, cmd).await,
            Command::Hash(cmd) => hash::run(&layers, cmd),
            Command::Mfa(cmd) => mfa::run(&layers, cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(&one_line(&e)),
    }
}

/// The error and its causes on one line, skipping causes whose text is already included.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {}", message.replace('\n', " "));
    ExitCode::FAILURE
}

/// Tells running instances to drop what they cached (the authorization epoch).
pub(crate) async fn announce(layers: &Layers) {
    let (Ok(target), Some(prefix)) = (layers.redis_target(), layers.value("REDIS_KEY_PREFIX")) else {
        eprintln!("warning: Redis is not configured; running instances see the change within AUTHZ_CACHE_TTL");
        return;
    };
    let Ok(keys) = auth_actors::keyspace::Keyspace::new(prefix) else { return };
    if let Err(e) =
        auth_actors::redis::epoch::bump_authz_epoch_at(&target, &keys, std::time::Duration::from_secs(5)).await
    {
        eprintln!("warning: running instances not told ({e}); they see the change within AUTHZ_CACHE_TTL");
    }
}
