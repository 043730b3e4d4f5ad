//! `auth-service clients create|list|show|rotate-secret|delete`: the OAuth client registry from
//! the command line, for operators (the same checks and writes as `/api/v1/clients`).
//!
//! Every change then replaces the authorization epoch in Redis, so running instances stop
//! using what they cached at once; if Redis cannot be reached, the command says so, and the
//! change reaches them within `AUTHZ_CACHE_TTL`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use auth_actors::db::clients::{self, ClientRecord};
use auth_actors::db::{self, Operation};
use clap::Subcommand;

use crate::config::Layers;
use crate::oauth::registry::MetadataInput;

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Register a client and print it (with its secret, shown only now).
    Create {
        /// `client_name`.
        #[arg(long)]
        name: String,
        /// A grant type (repeatable): client_credentials, refresh_token. Default client_credentials.
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// `token_endpoint_auth_method`: client_secret_basic (default), client_secret_post, private_key_jwt.
        #[arg(long)]
        auth_method: Option<String>,
        /// The scopes it may be granted, space-separated.
        #[arg(long)]
        scope: Option<String>,
        /// `aud` of its access tokens (default JWT_AUDIENCE).
        #[arg(long)]
        audience: Option<String>,
        /// A redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A file holding its JWK Set (private_key_jwt).
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        /// Where its JWK Set is published (private_key_jwt).
        #[arg(long)]
        jwks_uri: Option<String>,
        /// Access-token lifetime in seconds (default ACCESS_TOKEN_TTL).
        #[arg(long)]
        access_token_ttl: Option<i64>,
        /// Skip the consent page (for the service's own applications).
        #[arg(long)]
        first_party: bool,
        /// Every sign-in for it needs a second factor.
        #[arg(long)]
        require_mfa: bool,
    },
    /// List the registered clients.
    List,
    /// Print one client.
    Show { client_id: String },
    /// Give a client a new secret; the old one works `--overlap` longer (default CLIENT_SECRET_OVERLAP).
    RotateSecret {
        client_id: String,
        /// e.g. 1h, 0s.
        #[arg(long)]
        overlap: Option<String>,
    },
    /// Delete a client: its secrets and sessions go with it.
    Delete { client_id: String },
}

pub async fn run(layers: &Layers, cmd: ClientsCommand) -> anyhow::Result<ExitCode> {
    let mut client = super::migrate::connect_pooled(layers).await?;
    db::check_schema(&client).await?;
    match cmd {
        ClientsCommand::Create {
            name,
            grant_types,
            auth_method,
            scope,
            audience,
            redirect_uris,
            jwks_file,
            jwks_uri,
            access_token_ttl,
            first_party,
            require_mfa,
        } => {
            let jwks = match jwks_file {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    Some(serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?)
                }
                None => None,
            };
            let input = MetadataInput {
                client_name: Some(name),
                grant_types: (!grant_types.is_empty()).then_some(grant_types),
                redirect_uris: Some(redirect_uris),
                post_logout_redirect_uris: None,
                token_endpoint_auth_method: auth_method,
                scope,
                jwks,
                jwks_uri,
                audience,
                access_token_ttl,
                first_party: Some(first_party),
                require_mfa: Some(require_mfa),
            };
            let oauth = layers.oauth()?;
            let metadata = crate::oauth::registry::metadata(input, &oauth).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(api_audience) = layers.value("JWT_AUDIENCE") {
                crate::oauth::registry::check_audience(&metadata, api_audience).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let (secret, digest) = match metadata.auth_method.uses_secret() {
                true => crate::oauth::registry::new_secret()
                    .map(|(s, d)| (Some(s), Some(d)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                false => (None, None),
            };
            let client_id = crate::oauth::registry::new_client_id().map_err(|e| anyhow::anyhow!("{e}"))?;
            let create = clients::Create { client_id, metadata, secret_digest: digest, actor: None };
            let record = create.run(&mut client).await.map_err(db_error)?;
            let mut out = crate::oauth::routes::client_json(&record);
            if let Some(secret) = secret {
                out["client_secret"] = secret.into();
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ClientsCommand::List => {
            let all = clients::List.run(&mut client).await.map_err(db_error)?;
            println!("{:<24} {:<22} {:<40} SCOPE", "CLIENT_ID", "AUTH_METHOD", "NAME");
            for c in all {
                let m = &c.metadata;
                println!("{:<24} {:<22} {:<40} {}", c.client_id, m.auth_method.as_str(), m.client_name, m.scope);
            }
        }
        ClientsCommand::Show { client_id } => {
            let found = clients::Get { client_id: client_id.clone() }.run(&mut client).await.map_err(db_error)?;
            let record: ClientRecord = found.with_context(|| format!("no client {client_id}"))?;
            println!("{}", serde_json::to_string_pretty(&crate::oauth::routes::client_json(&record))?);
        }
        ClientsCommand::RotateSecret { client_id, overlap } => {
            let overlap = match overlap {
                Some(raw) => crate::config::parse_duration(&raw).map_err(|e| anyhow::anyhow!("--overlap: {e}"))?,
                None => layers.oauth()?.secret_overlap,
            };
            if overlap > crate::config::MAX_SECRET_OVERLAP {
                bail!("--overlap must be at most 30 days");
            }
            let found = clients::Get { client_id: client_id.clone() }.run(&mut client).await.map_err(db_error)?;
            let record = found.with_context(|| format!("no client {client_id}"))?;
            if !record.metadata.auth_method.uses_secret() {
                bail!(
                    "client {client_id} authenticates with {}, not with a secret",
                    record.metadata.auth_method.as_str()
                );
            }
            let (secret, digest) = crate::oauth::registry::new_secret().map_err(|e| anyhow::anyhow!("{e}"))?;
            let rotate = clients::RotateSecret { client_id: client_id.clone(), digest, overlap, actor: None };
            let until =
                rotate.run(&mut client).await.map_err(db_error)?.with_context(|| format!("no client {client_id}"))?;
            super::announce(layers).await;
            let until = until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({ "client_id": client_id, "client_secret": secret, "previous_secrets_expire_at": until })
            );
        }
        ClientsCommand::Delete { client_id } => {
            let deleted = clients::Delete { client_id: client_id.clone(), actor: None }
                .run(&mut client)
                .await
                .map_err(db_error)?;
            if deleted.is_none() {
                bail!("no client {client_id}");
            }
            super::announce(layers).await;
            println!("deleted client {client_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn db_error(e: tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!("database: {}", db::error_chain(&e))
}
