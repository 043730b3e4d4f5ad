//! PostgreSQL outside the request path: building the connection pool, connecting for the
//! operator commands, the embedded migrations, the schema check done at startup, and the
//! bootstrap writes (`seed-roles`, `create-superuser`).
//!
//! Migrations are the SQL files of `migrations/`, embedded at compile time and applied by
//! refinery, which records each one in `refinery_schema_history`. They run only when an
//! operator runs `migrate`; `serve` refuses to start on a schema that is behind.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::error_chain;
use super::events::{self, SecurityEvent};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// The roles every installation starts with.
pub const DEFAULT_ROLES: &[(&str, &str)] = &[
    ("admin", "Full administrative access"),
    ("user", "A regular signed-up user"),
    ("service", "A backend service that checks roles and introspects tokens"),
    ("guest", "The principal of unauthenticated requests"),
    ("moderator", "Moderates user content"),
    ("subscriber", "A paying subscriber"),
];

/// PostgreSQL failures outside of request handling (startup and operator commands); a request's
/// failures are [`DbError`](super::DbError)s.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(tokio_postgres::Error),
    #[error("PostgreSQL is unreachable: {0}")]
    Unreachable(String),
    #[error(
        "database schema is not migrated (at version {}, this build needs {expected}); run `auth-service migrate`",
        current.map_or_else(|| "none".to_string(), |v| v.to_string())
    )]
    NotMigrated { current: Option<i32>, expected: i32 },
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("PostgreSQL error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Parses a database URL without connecting.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, SetupError> {
    tokio_postgres::Config::from_str(url).map_err(SetupError::BadUrl)
}

/// Builds the pool. Connections are opened lazily; `connect_timeout` bounds each attempt and
/// `wait_timeout` bounds how long a request waits for a free connection.
pub fn build_pool(url: &str, size: usize, timeout: Duration) -> Result<Pool, SetupError> {
    let mut config = parse_url(url)?;
    config.connect_timeout(timeout);
    config.application_name("auth-service");
    // A primary that vanishes without closing its connections (power loss, a partition) must
    // not leave pooled connections waiting for the kernel's own timeouts (minutes to hours):
    // unacknowledged writes give up after a few seconds and idle connections are probed, so
    // the pool drops them and new ones find the promoted standby. The URL may set its own.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(timeout * 5);
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
    }
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| SetupError::Unreachable(e.to_string()))
}

/// Opens one connection outside any pool (operator commands).
pub async fn connect(url: &str, timeout: Duration) -> Result<tokio_postgres::Client, SetupError> {
    let mut config = parse_url(url)?;
    config.connect_timeout(timeout);
    let (client, connection) = config.connect(NoTls).await.map_err(|e| SetupError::Unreachable(error_chain(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

/// One connection from a pool of one (operator commands that run the same operations as
/// the Database).
pub async fn connect_pooled(url: &str, timeout: Duration) -> Result<deadpool_postgres::Client, SetupError> {
    let pool = build_pool(url, 1, timeout)?;
    pool.get().await.map_err(|e| SetupError::Unreachable(error_chain(&e)))
}

/// The newest migration version this build embeds.
pub fn expected_version() -> i32 {
    embedded::migrations::runner().get_migrations().iter().map(|m| m.version()).max().unwrap_or(0)
}

/// The newest migration applied to the database, if any.
pub async fn current_version(client: &tokio_postgres::Client) -> Result<Option<i32>, SetupError> {
    let row = client.query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[]).await?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client.query_one("SELECT max(version) FROM refinery_schema_history", &[]).await?;
    Ok(row.get::<_, Option<i32>>(0))
}

/// Fails unless the database has every migration this build embeds.
pub async fn check_schema(client: &tokio_postgres::Client) -> Result<(), SetupError> {
    let expected = expected_version();
    let current = current_version(client).await?;
    if current.unwrap_or(0) < expected {
        return Err(SetupError::NotMigrated { current, expected });
    }
    Ok(())
}

/// What `migrate` did.
#[derive(Debug)]
pub struct MigrateReport {
    pub applied: Vec<String>,
    pub partitions_created: i32,
}

/// Applies pending migrations in order, then makes sure the login-history partitions for the
/// coming months exist. Running it again applies nothing.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<MigrateReport, SetupError> {
    let report = embedded::migrations::runner().run_async(client).await?;
    let applied = report.applied_migrations().iter().map(|m| format!("V{}__{}", m.version(), m.name())).collect();
    let row = client.query_one("SELECT ensure_login_history_partitions(3)", &[]).await?;
    Ok(MigrateReport { applied, partitions_created: row.get(0) })
}

/// Inserts the default roles that are missing; returns the names it inserted.
pub async fn seed_roles(client: &tokio_postgres::Client) -> Result<Vec<String>, SetupError> {
    let mut inserted = Vec::new();
    for (name, description) in DEFAULT_ROLES {
        let n = client
            .execute(
                "INSERT INTO roles (id, name, description) VALUES ($1, $2, $3)
                 ON CONFLICT (lower(name)) DO NOTHING",
                &[&Uuid::now_v7(), name, description],
            )
            .await?;
        if n == 1 {
            inserted.push((*name).to_string());
        }
    }
    Ok(inserted)
}

/// What `create-superuser` did.
#[derive(Debug, PartialEq, Eq)]
pub enum SuperuserOutcome {
    Created(Uuid),
    /// The user existed, was named by both its username and its email, and proved its
    /// password; it now holds `admin`.
    Promoted(Uuid),
}

/// Why `create-superuser` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SuperuserError {
    #[error(transparent)]
    Db(#[from] SetupError),
    /// The request was refused; the message says why, in one line.
    #[error("{0}")]
    Refused(String),
}

impl From<tokio_postgres::Error> for SuperuserError {
    fn from(e: tokio_postgres::Error) -> Self {
        SuperuserError::Db(e.into())
    }
}

/// The account `create-superuser` works on, and how to prove it is the operator's.
pub struct SuperuserRequest<'a, H, V> {
    pub username: &'a str,
    pub email: &'a str,
    /// Promote an existing account (named by both `username` and `email`, and whose password
    /// `verify` accepts) instead of refusing.
    pub promote_existing: bool,
    /// Makes the password hash of a new account.
    pub hash: H,
    /// Checks the given password against an existing account's stored hash.
    pub verify: V,
}

/// Creates `username` with the given password and the admin role. An account that already
/// holds the username or the email is never promoted silently: only with `promote_existing`,
/// only when the username and the email name that same account, and only when the password
/// given verifies against it; otherwise nothing changes and the reason is returned. The
/// `admin` role must exist (`seed-roles`).
pub async fn create_superuser<H, V>(
    client: &mut deadpool_postgres::Client,
    request: SuperuserRequest<'_, H, V>,
) -> Result<SuperuserOutcome, SuperuserError>
where
    H: FnOnce() -> Result<String, String>,
    V: FnOnce(&str) -> bool,
{
    let SuperuserRequest { username, email, promote_existing, hash, verify } = request;
    let refuse = |why: String| Err(SuperuserError::Refused(why));
    let tx = client.transaction().await?;
    let Some(admin) = tx.query_opt("SELECT id FROM roles WHERE lower(name) = 'admin'", &[]).await? else {
        return refuse("the admin role does not exist; run `auth-service seed-roles` first".into());
    };
    let admin: Uuid = admin.get(0);
    let existing = tx
        .query(
            "SELECT id, lower(username) = lower($1), lower(email) = lower($2), password_hash, is_active FROM users
             WHERE lower(username) = lower($1) OR lower(email) = lower($2) FOR UPDATE",
            &[&username, &email],
        )
        .await?;
    let outcome = match existing.as_slice() {
        [] => {
            let hash = match hash() {
                Ok(h) => h,
                Err(e) => return refuse(e),
            };
            let id = Uuid::now_v7();
            // The operator who runs this command vouches for the address: an administrator
            // must be able to sign in even when REQUIRE_VERIFIED_EMAIL is on and no mail can
            // be sent yet.
            tx.execute(
                "INSERT INTO users (id, username, email, password_hash, email_verified) VALUES ($1, $2, $3, $4, true)",
                &[&id, &username, &email, &hash],
            )
            .await?;
            SuperuserOutcome::Created(id)
        }
        _ if !promote_existing => {
            let name_taken = existing.iter().any(|r| r.get::<_, bool>(1));
            let email_taken = existing.iter().any(|r| r.get::<_, bool>(2));
            let what = match (name_taken, email_taken) {
                (true, true) => format!("username {username:?} and email {email:?} are"),
                (true, false) => format!("username {username:?} is"),
                _ => format!("email {email:?} is"),
            };
            return refuse(format!(
                "{what} already taken; nothing changed (to make that account admin, run again with \
                 --promote-existing and its own password)"
            ));
        }
        [row] if row.get::<_, bool>(1) && row.get::<_, bool>(2) => {
            if !row.get::<_, bool>(4) {
                return refuse(format!("account {username:?} is inactive; nothing changed"));
            }
            if !verify(&row.get::<_, String>(3)) {
                return refuse(format!("the password does not match account {username:?}; nothing changed"));
            }
            SuperuserOutcome::Promoted(row.get(0))
        }
        _ => {
            return refuse(format!(
                "username {username:?} and email {email:?} do not belong to the same account; nothing changed"
            ));
        }
    };
    let user_id = match &outcome {
        SuperuserOutcome::Created(id) | SuperuserOutcome::Promoted(id) => *id,
    };
    tx.execute("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&user_id, &admin])
        .await?;
    let event = SecurityEvent::RoleAssigned {
        user: user_id,
        role: admin,
        name: "admin".into(),
        by: None,
        via: Some("create-superuser"),
    };
    events::record_in(&tx, &event, None).await?;
    tx.commit().await?;
    Ok(outcome)
}
