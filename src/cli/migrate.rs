//! `auth-service migrate` and `auth-service seed-roles`.

use std::process::ExitCode;
use std::time::Duration;

use auth_actors::db;

use crate::config::Layers;

fn database_url(layers: &Layers) -> anyhow::Result<&str> {
    layers.value("DATABASE_URL").ok_or_else(|| anyhow::anyhow!("missing setting DATABASE_URL"))
}

pub(super) async fn connect(layers: &Layers) -> anyhow::Result<tokio_postgres::Client> {
    Ok(db::connect(database_url(layers)?, Duration::from_secs(5)).await?)
}

/// One connection from a pool of one, for the commands that run the Database's operations and
/// event writes (which take pooled connections).
pub(super) async fn connect_pooled(layers: &Layers) -> anyhow::Result<db::PooledClient> {
    Ok(db::connect_pooled(database_url(layers)?, Duration::from_secs(5)).await?)
}

pub async fn migrate(layers: &Layers) -> anyhow::Result<ExitCode> {
    let mut client = connect(layers).await?;
    let report = db::migrate(&mut client).await?;
    if report.applied.is_empty() {
        println!("schema is up to date (version {})", db::expected_version());
    } else {
        for name in &report.applied {
            println!("applied {name}");
        }
    }
    if report.partitions_created > 0 {
        println!("created {} login_history partition(s)", report.partitions_created);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn seed_roles(layers: &Layers) -> anyhow::Result<ExitCode> {
    let client = connect(layers).await?;
    db::check_schema(&client).await?;
    let inserted = db::seed_roles(&client).await?;
    if inserted.is_empty() {
        println!("all default roles already exist");
    } else {
        println!("inserted roles: {}", inserted.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
