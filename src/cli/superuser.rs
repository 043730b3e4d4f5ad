//! `auth-service create-superuser`: bootstrap the first admin.
//!
//! The password is read from `SUPERUSER_PASSWORD` or standard input (without echo on a
//! terminal) and never accepted as an argument, so it cannot leak through `ps` or shell
//! history.
//!
//! An account that already holds the username or the email is never promoted silently:
//! anyone could have signed up as `admin` before the operator ran this. Promoting one takes
//! `--promote-existing`, a username and an email that name that same account, and that
//! account's own password; anything else exits non-zero with one line saying why.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use auth_actors::db::{self, SuperuserError, SuperuserOutcome, SuperuserRequest};

use crate::config::Layers;
use crate::domain::{Email, Password, PasswordPolicy, Username};

#[derive(clap::Args)]
pub struct Args {
    /// Username (or SUPERUSER_USERNAME).
    #[arg(long, env = "SUPERUSER_USERNAME")]
    username: String,
    /// Email (or SUPERUSER_EMAIL).
    #[arg(long, env = "SUPERUSER_EMAIL")]
    email: String,
    /// Give the admin role to an existing account, named by both its username and its email,
    /// whose password is the one given.
    #[arg(long)]
    promote_existing: bool,
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("SUPERUSER_PASSWORD")
        && !p.is_empty()
    {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        rpassword::prompt_password("Password: ").context("cannot read the password")?
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        bail!("no password given (set SUPERUSER_PASSWORD or pipe it on stdin)");
    }
    Ok(password)
}

pub async fn run(layers: &Layers, args: Args) -> anyhow::Result<ExitCode> {
    let config = layers.passwords()?;
    let params = crate::passwords::params(&config)?;
    let policy = PasswordPolicy::from(&config);
    let username = Username::parse(args.username).map_err(|e| anyhow::anyhow!("username: {e}"))?;
    let email = Email::parse(args.email).map_err(|e| anyhow::anyhow!("email: {e}"))?;
    let mut client = super::migrate::connect_pooled(layers).await?;
    db::check_schema(&client).await?;
    let password = read_password()?;
    let given = password.clone();
    let (name, address) = (username.as_str().to_string(), email.as_str().to_string());
    let hash = move || {
        let password = Password::new(policy, password, &name, &address).map_err(|e| e.to_string())?;
        crate::passwords::hash_with(&params, password.expose()).map_err(|e| e.to_string())
    };
    let verify = move |stored: &str| crate::passwords::verify_with(stored, &given);
    let request = SuperuserRequest {
        username: username.as_str(),
        email: email.as_str(),
        promote_existing: args.promote_existing,
        hash,
        verify,
    };
    match db::create_superuser(&mut client, request).await {
        Ok(SuperuserOutcome::Created(id)) => println!("created admin user {} ({id})", username.as_str()),
        Ok(SuperuserOutcome::Promoted(id)) => {
            // Running instances drop their cached standing of the account at once.
            super::announce(layers).await;
            println!("user {} ({id}) now holds the admin role; its password is unchanged", username.as_str())
        }
        Err(SuperuserError::Refused(reason)) => bail!(reason),
        Err(SuperuserError::Db(e)) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}
