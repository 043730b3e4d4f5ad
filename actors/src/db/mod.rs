//! The Database: a pool of worker actors over one deadpool-postgres pool, through which every
//! query of the service runs, and the operations they run, one module per aggregate. It is the
//! SPEC's "UserStore"; operators see it as `user_store` (the actor label of the metrics and
//! logs, the workers `user_store-N`, `USER_STORE_WORKERS`, the test hook
//! `/api/v1/_test/fail/user_store`), and those names stay.
//!
//! An operation is one [`Operation`] (a struct and its SQL) in the module of the aggregate it
//! reads or writes: [`users`], [`sessions`] (refresh tokens, their families, browser sessions),
//! [`clients`] (OAuth clients), [`grants`] (authorization codes and consent), [`roles`],
//! [`events`] (security events), [`history`] (login history), [`account_tokens`] and
//! [`outbox`] (mailed tokens, mail to send), [`email`] (verifying and changing an address), [`mfa`],
//! [`totp`] and [`webauthn`] (second factors: TOTP, passkeys).
//! There is no message per operation: the handle wraps the operation with its reply port into a
//! [`Job`], sends it to a worker and awaits the reply with the call timeout; the worker takes a
//! pooled connection and runs it, trying again when PostgreSQL aborted it for contention. So a
//! new operation needs no change here. [`setup`] is PostgreSQL outside the request path: the pool, migrations, the
//! schema check and the operator commands' writes.
//!
//! The handle spreads calls round-robin over the workers that are up, preferring idle ones and
//! skipping any that is restarting, so one failed worker costs capacity, not availability. When
//! an operation says it changed some user's roles or standing, the handle replaces the
//! authorization epoch after the commit, before it returns: callers cannot forget to.

pub mod account_tokens;
pub mod clients;
pub mod email;
pub mod events;
pub mod grants;
pub mod history;
pub mod mfa;
pub mod outbox;
pub mod password_reset;
pub mod roles;
pub mod sessions;
pub mod setup;
pub mod totp;
pub mod users;
pub mod webauthn;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::{GenericClient, Pool};
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error as PgError, Row};

use crate::handle::{CallError, Endpoint};
use crate::metrics::ActorMetrics;
use crate::redis::{RedisError, RedisHandle};
use crate::supervised::{Mail, Supervised};

/// A pooled PostgreSQL connection, as every [`Operation`] takes one.
pub use deadpool_postgres::Client as PooledClient;
pub use setup::{
    DEFAULT_ROLES, MigrateReport, SetupError, SuperuserError, SuperuserOutcome, SuperuserRequest, build_pool,
    check_schema, connect, connect_pooled, create_superuser, current_version, expected_version, migrate, parse_url,
    seed_roles,
};

/// One Database operation: a struct whose fields are its arguments and whose [`run`] is its
/// SQL. This is the whole definition of an operation: the Database's workers run any of them
/// (with the pool, the contention retries, the timeouts and the metrics every operation shares),
/// and callers send one with [`DatabaseHandle::run`].
///
/// `run` may be called more than once: when PostgreSQL aborts a try because it conflicted with
/// a concurrent transaction, the try wrote nothing and the operation runs again. So each run is
/// one transaction (or one statement), and takes its arguments by reference.
///
/// [`run`]: Operation::run
pub trait Operation: Send + Sync + 'static {
    type Output: Send + 'static;

    /// Whether a successful run changed some user's roles or standing: the Database then
    /// replaces the authorization epoch after the commit, so that no instance goes on trusting
    /// what it cached (see the service's `authz` module).
    fn changes_standing(_output: &Self::Output) -> bool {
        false
    }

    fn run(
        &self,
        client: &mut deadpool_postgres::Client,
    ) -> impl Future<Output = Result<Self::Output, tokio_postgres::Error>> + Send;
}

/// Failures of a Database request.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// PostgreSQL is unreachable, the pool had no connection in time, or a query failed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique index refused the write; names the field (`username`, `email`, `name`, ...).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// PostgreSQL kept aborting the transaction because it conflicted with concurrent ones
    /// (deadlock, serialization failure), after [`CONTENTION_ATTEMPTS`] tries. Nothing was
    /// written; the database itself is fine.
    #[error("the request kept conflicting with concurrent changes")]
    Contention,
    /// PostgreSQL refused a value the operation carried (SQLSTATE class 22, data exception: a
    /// NUL or an invalid byte sequence in text, a number, date or interval out of range). The
    /// database is fine; the input is not, so this is never reported as an outage.
    #[error("the database refused a value: {0}")]
    Rejected(String),
    /// The change was committed, but the authorization epoch could not be replaced, so other
    /// instances may trust their cached standing for up to `AUTHZ_CACHE_TTL`.
    #[error("the change was saved but could not be announced: {0}")]
    Unannounced(RedisError),
}

/// How many times a Database operation is run when PostgreSQL aborts it for conflicting with
/// a concurrent transaction. Every operation is one transaction (or one statement), so an
/// aborted try wrote nothing and the next starts afresh.
pub const CONTENTION_ATTEMPTS: u32 = 4;

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_contention(&e) {
            return DbError::Contention;
        }
        if is_data_exception(&e) {
            return DbError::Rejected(error_chain(&e));
        }
        match conflict_field(&e) {
            Some(field) => DbError::Conflict(field),
            None => DbError::Unavailable(error_chain(&e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Unavailable(error_chain(&e))
    }
}

type Reply<T> = RpcReplyPort<Result<T, DbError>>;

/// An operation with its reply port, its output type erased, so that one message kind carries
/// every operation.
pub trait Job: Send {
    /// Runs the operation on `state`'s pool and sends the reply.
    fn execute(self: Box<Self>, state: &Database) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

struct Pending<O: Operation> {
    op: O,
    reply: Reply<O::Output>,
}

impl<O: Operation> Job for Pending<O> {
    fn execute(self: Box<Self>, state: &Database) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let Pending { op, reply } = *self;
        Box::pin(async move {
            let _ = reply.send(state.run(&op).await);
        })
    }
}

/// Messages a Database worker handles.
pub enum DatabaseMsg {
    /// Run one operation and reply with its result.
    Run(Box<dyn Job>),
}

/// Startup arguments of a worker, reused on every restart.
#[derive(Clone)]
pub struct DatabaseArgs {
    pub pool: Pool,
    pub metrics: ActorMetrics,
}

/// One worker of the Database: its state is the shared pool and where it counts errors.
pub struct Database {
    pool: Pool,
    metrics: ActorMetrics,
}

impl Database {
    /// Runs `op` on a pooled connection, counting database errors. A try that PostgreSQL
    /// aborted for conflicting with a concurrent transaction is run again (it wrote nothing), up
    /// to [`CONTENTION_ATTEMPTS`] tries.
    async fn run<O: Operation>(&self, op: &O) -> Result<O::Output, DbError> {
        let mut attempt = 1;
        let result = loop {
            let result = async {
                let mut client = self.pool.get().await?;
                Ok::<_, DbError>(op.run(&mut client).await?)
            }
            .await;
            match result {
                Err(DbError::Contention) if attempt < CONTENTION_ATTEMPTS => {
                    self.metrics.postgres_contention.inc();
                    attempt += 1;
                }
                other => break other,
            }
        };
        match &result {
            Err(DbError::Unavailable(reason)) => {
                self.metrics.postgres_errors.inc();
                tracing::debug!(operation = std::any::type_name::<O>(), reason = %reason, "database operation failed");
            }
            Err(DbError::Contention) => {
                self.metrics.postgres_contention.inc();
            }
            _ => {}
        }
        result
    }
}

impl Supervised for Database {
    type Msg = DatabaseMsg;
    type Args = DatabaseArgs;

    async fn start(_: ActorRef<Mail<DatabaseMsg>>, args: DatabaseArgs) -> Result<Self, ActorProcessingErr> {
        Ok(Database { pool: args.pool, metrics: args.metrics })
    }

    async fn handle(&mut self, msg: DatabaseMsg) -> Result<(), ActorProcessingErr> {
        let DatabaseMsg::Run(job) = msg;
        job.execute(self).await;
        Ok(())
    }
}

/// The typed handle to the worker pool.
#[derive(Clone)]
pub struct DatabaseHandle {
    workers: Arc<[Endpoint<DatabaseMsg>]>,
    next: Arc<AtomicUsize>,
    /// The pool, once the supervisor has built it: read for the saturation metrics only.
    pool: Arc<std::sync::OnceLock<Pool>>,
    /// Where a change of standing is announced (the authorization epoch).
    redis: RedisHandle,
}

/// Connection-pool occupancy, for the saturation metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

impl DatabaseHandle {
    pub(crate) fn new(workers: Vec<Endpoint<DatabaseMsg>>, redis: RedisHandle) -> Self {
        DatabaseHandle { workers: workers.into(), next: Arc::new(AtomicUsize::new(0)), pool: Arc::default(), redis }
    }

    pub(crate) fn set_pool(&self, pool: Pool) {
        let _ = self.pool.set(pool);
    }

    /// Occupancy of the PostgreSQL pool, when it exists.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        let s = self.pool.get()?.status();
        Some(PoolStatus { max_size: s.max_size, size: s.size, available: s.available, waiting: s.waiting })
    }

    /// Picks the next worker that is up, preferring an idle one, from a rotating offset.
    fn pick(&self) -> Result<&Endpoint<DatabaseMsg>, CallError> {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut first_up = None;
        for i in 0..n {
            let w = &self.workers[(start + i) % n];
            if w.is_up() {
                if w.in_flight() == 0 {
                    return Ok(w);
                }
                first_up.get_or_insert(w);
            }
        }
        first_up.ok_or(CallError::Unavailable("user_store"))
    }

    /// Runs one operation on a worker, within the call timeout. If it changed some user's
    /// roles or standing, the authorization epoch is replaced before this returns.
    pub async fn run<O: Operation>(&self, op: O) -> Result<O::Output, DbError> {
        let output = self.pick()?.call(|reply| DatabaseMsg::Run(Box::new(Pending { op, reply }))).await??;
        if O::changes_standing(&output) {
            self.redis.bump_authz_epoch().await.map_err(DbError::Unannounced)?;
        }
        Ok(output)
    }

    /// Checks a pooled connection (readiness).
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(Ping).await
    }

    /// Makes worker `index` fail. Test builds only.
    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, index: usize, reason: &str) -> Result<(), CallError> {
        let w = self.workers.get(index % self.workers.len().max(1)).ok_or(CallError::Unavailable("user_store"))?;
        w.fail(reason)
    }
}

/// `SELECT 1` on a pooled connection (the readiness probe).
#[derive(Debug, Clone, Copy)]
pub struct Ping;

impl Operation for Ping {
    type Output = ();

    async fn run(&self, client: &mut deadpool_postgres::Client) -> Result<(), tokio_postgres::Error> {
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs one statement (prepared once per connection) for its one row.
pub(crate) async fn one(client: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Row, PgError> {
    let stmt = client.prepare_cached(sql).await?;
    client.query_one(&stmt, params).await
}

/// Runs one statement for its row, if there is one.
pub(crate) async fn opt(client: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Option<Row>, PgError> {
    let stmt = client.prepare_cached(sql).await?;
    client.query_opt(&stmt, params).await
}

/// Runs one statement for all its rows.
pub(crate) async fn all(client: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Vec<Row>, PgError> {
    let stmt = client.prepare_cached(sql).await?;
    client.query(&stmt, params).await
}

/// Runs one statement for the number of rows it changed.
pub(crate) async fn run(client: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<u64, PgError> {
    let stmt = client.prepare_cached(sql).await?;
    client.execute(&stmt, params).await
}

/// One page of the rows of `from` (a table, with any `WHERE` on the filter parameters) and how
/// many rows there are in all.
pub(crate) struct Paged<'a> {
    pub columns: &'a str,
    pub from: &'a str,
    pub order: &'a str,
    pub limit: i64,
    pub offset: i64,
}

impl Paged<'_> {
    pub(crate) async fn fetch<T>(
        &self,
        client: &impl GenericClient,
        filter: Params<'_>,
        map: impl Fn(&Row) -> T,
    ) -> Result<(Vec<T>, i64), PgError> {
        let (n, from) = (filter.len(), self.from);
        let sql =
            format!("SELECT {} FROM {from} ORDER BY {} LIMIT ${} OFFSET ${}", self.columns, self.order, n + 1, n + 2);
        let mut params = filter.to_vec();
        params.extend([&self.limit as &(dyn ToSql + Sync), &self.offset]);
        let items = all(client, &sql, &params).await?.iter().map(map).collect();
        let total: i64 = one(client, &format!("SELECT count(*) FROM {from}"), filter).await?.get(0);
        Ok((items, total))
    }
}
/// Renders an error with its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Maps a unique-violation on one of our indexes to the field it protects.
pub(crate) fn conflict_field(e: &tokio_postgres::Error) -> Option<&'static str> {
    let db = e.as_db_error()?;
    if db.code() != &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
        return None;
    }
    match db.constraint() {
        Some("users_username_lower_key") => Some("username"),
        Some("users_email_lower_key") => Some("email"),
        Some("roles_name_lower_key") => Some("name"),
        Some("user_roles_pkey") => Some("role"),
        Some("webauthn_credentials_credential_id_key") => Some("passkey"),
        _ => Some("value"),
    }
}

/// Whether a write failed because a row it refers to was deleted concurrently.
pub(crate) fn is_foreign_key_violation(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| db.code() == &tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
}

/// Whether PostgreSQL aborted a transaction because it conflicted with a concurrent one
/// (deadlock or serialization failure): nothing was written, and running it again is safe.
pub(crate) fn is_contention(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::T_R_DEADLOCK_DETECTED || db.code() == &SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Whether PostgreSQL refused a value rather than failed: SQLSTATE class 22, data exception
/// (`22021` a NUL or an invalid byte sequence in text, `22P05` an untranslatable character such
/// as `\u0000` in jsonb, `22003` a number out of range, `22008`/`22015` a date or interval out
/// of range, ...).
pub(crate) fn is_data_exception(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| db.code().code().starts_with("22"))
}
