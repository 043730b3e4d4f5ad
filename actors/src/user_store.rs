//! The UserStore: a pool of worker actors over one deadpool-postgres pool. Every read and
//! write of users, roles, refresh tokens, login history and security events goes through it.
//!
//! An operation is one [`Operation`] (a struct and its SQL, in [`crate::db`]); there is no
//! message per operation. The handle wraps the operation with its reply port into a [`Job`],
//! sends it to a worker and awaits the reply with the call timeout; the worker takes a pooled
//! connection and runs it, trying again when PostgreSQL aborted it for contention. So a new
//! operation needs no change here.
//!
//! The handle spreads calls round-robin over the workers that are up, preferring idle ones and
//! skipping any that is restarting, so one failed worker costs capacity, not availability. When
//! an operation says it changed some user's roles or standing, the handle replaces the
//! authorization epoch after the commit, before it returns: callers cannot forget to.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::db::{self, Operation};
use crate::handle::{CallError, Endpoint};
use crate::metrics::ActorMetrics;
use crate::rate_limiter::{LimiterError, RateLimiterHandle};

/// Failures of a UserStore request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    Unannounced(LimiterError),
}

/// How many times a UserStore operation is run when PostgreSQL aborts it for conflicting with
/// a concurrent transaction. Every operation is one transaction (or one statement), so an
/// aborted try wrote nothing and the next starts afresh.
pub const CONTENTION_ATTEMPTS: u32 = 4;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if db::is_contention(&e) {
            return StoreError::Contention;
        }
        if db::is_data_exception(&e) {
            return StoreError::Rejected(db::error_chain(&e));
        }
        match db::conflict_field(&e) {
            Some(field) => StoreError::Conflict(field),
            None => StoreError::Unavailable(db::error_chain(&e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(db::error_chain(&e))
    }
}

type Reply<T> = RpcReplyPort<Result<T, StoreError>>;

/// An operation with its reply port, its output type erased, so that one message kind carries
/// every operation.
pub trait Job: Send {
    /// Runs the operation on `state`'s pool and sends the reply.
    fn execute(self: Box<Self>, state: &UserStoreState) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

struct Pending<O: Operation> {
    op: O,
    reply: Reply<O::Output>,
}

impl<O: Operation> Job for Pending<O> {
    fn execute(self: Box<Self>, state: &UserStoreState) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let Pending { op, reply } = *self;
        Box::pin(async move {
            let _ = reply.send(state.run(&op).await);
        })
    }
}

/// Messages a UserStore worker handles.
pub enum UserStoreMsg {
    /// Run one operation and reply with its result.
    Run(Box<dyn Job>),
    /// Fail on purpose, to exercise supervision. Test builds only.
    #[cfg(feature = "failure-hook")]
    Fail(String),
}

/// Startup arguments of a worker, reused on every restart.
#[derive(Clone)]
pub struct UserStoreArgs {
    pub pool: Pool,
    pub metrics: ActorMetrics,
}

pub struct UserStoreState {
    pool: Pool,
    metrics: ActorMetrics,
}

impl UserStoreState {
    /// Runs `op` on a pooled connection, counting database errors. A try that PostgreSQL
    /// aborted for conflicting with a concurrent transaction is run again (it wrote nothing), up
    /// to [`CONTENTION_ATTEMPTS`] tries.
    async fn run<O: Operation>(&self, op: &O) -> Result<O::Output, StoreError> {
        let mut attempt = 1;
        let result = loop {
            let result = async {
                let mut client = self.pool.get().await?;
                Ok::<_, StoreError>(op.run(&mut client).await?)
            }
            .await;
            match result {
                Err(StoreError::Contention) if attempt < CONTENTION_ATTEMPTS => {
                    self.metrics.postgres_contention.inc();
                    attempt += 1;
                }
                other => break other,
            }
        };
        match &result {
            Err(StoreError::Unavailable(reason)) => {
                self.metrics.postgres_errors.inc();
                tracing::debug!(operation = std::any::type_name::<O>(), reason = %reason, "database operation failed");
            }
            Err(StoreError::Contention) => {
                self.metrics.postgres_contention.inc();
            }
            _ => {}
        }
        result
    }
}

pub struct UserStore;

impl Actor for UserStore {
    type Msg = UserStoreMsg;
    type State = UserStoreState;
    type Arguments = UserStoreArgs;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, args: UserStoreArgs) -> Result<Self::State, ActorProcessingErr> {
        Ok(UserStoreState { pool: args.pool, metrics: args.metrics })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UserStoreMsg::Run(job) => job.execute(state).await,
            #[cfg(feature = "failure-hook")]
            UserStoreMsg::Fail(reason) => return Err(reason.into()),
        }
        Ok(())
    }
}

/// The typed handle to the worker pool.
#[derive(Clone)]
pub struct UserStoreHandle {
    workers: Arc<[Endpoint<UserStoreMsg>]>,
    next: Arc<AtomicUsize>,
    /// The pool, once the supervisor has built it: read for the saturation metrics only.
    pool: Arc<std::sync::OnceLock<Pool>>,
    /// Where a change of standing is announced (the authorization epoch).
    limiter: RateLimiterHandle,
}

/// Connection-pool occupancy, for the saturation metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

impl UserStoreHandle {
    pub(crate) fn new(workers: Vec<Endpoint<UserStoreMsg>>, limiter: RateLimiterHandle) -> Self {
        UserStoreHandle { workers: workers.into(), next: Arc::new(AtomicUsize::new(0)), pool: Arc::default(), limiter }
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
    fn pick(&self) -> Result<&Endpoint<UserStoreMsg>, CallError> {
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
    pub async fn run<O: Operation>(&self, op: O) -> Result<O::Output, StoreError> {
        let output = self.pick()?.call(|reply| UserStoreMsg::Run(Box::new(Pending { op, reply }))).await??;
        if O::changes_standing(&output) {
            self.limiter.bump_authz_epoch().await.map_err(StoreError::Unannounced)?;
        }
        Ok(output)
    }

    /// Checks a pooled connection (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(db::Ping).await
    }

    /// Makes worker `index` fail. Test builds only.
    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, index: usize, reason: &str) -> Result<(), CallError> {
        let w = self.workers.get(index % self.workers.len().max(1)).ok_or(CallError::Unavailable("user_store"))?;
        w.cast(UserStoreMsg::Fail(reason.to_string()))
    }
}
