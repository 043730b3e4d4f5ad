//! The UserStore: a pool of worker actors over one deadpool-postgres pool. Every read and
//! write of users, roles, refresh tokens, login history and security events goes through it.
//!
//! The handle spreads calls round-robin over the workers that are up, skipping any that is
//! restarting or saturated, so one failed worker costs capacity, not availability.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::handle::{CallError, Endpoint};
use crate::metrics::ActorMetrics;

/// Failures of a UserStore request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// PostgreSQL is unreachable or the pool had no connection in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

/// Messages a UserStore worker handles.
pub enum UserStoreMsg {
    /// Run `SELECT 1` on a pooled connection (readiness probe).
    Ping(RpcReplyPort<Result<(), StoreError>>),
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

pub struct UserStore;

impl Actor for UserStore {
    type Msg = UserStoreMsg;
    type State = UserStoreState;
    type Arguments = UserStoreArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: UserStoreArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(UserStoreState { pool: args.pool, metrics: args.metrics })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UserStoreMsg::Ping(reply) => {
                let result = async {
                    let client = state.pool.get().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    client.query_one("SELECT 1", &[]).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    Ok(())
                }
                .await;
                if result.is_err() {
                    state.metrics.postgres_errors.inc();
                }
                let _ = reply.send(result);
            }
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
}

impl UserStoreHandle {
    pub(crate) fn new(workers: Vec<Endpoint<UserStoreMsg>>) -> Self {
        UserStoreHandle { workers: workers.into(), next: Arc::new(AtomicUsize::new(0)) }
    }

    /// Picks the next worker that is up, starting from a rotating offset.
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

    /// Calls one worker and flattens the call error into the store error.
    async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<R, StoreError>>) -> UserStoreMsg,
    ) -> Result<R, StoreError> {
        self.pick()?.call(build).await?
    }

    /// Number of workers currently running.
    pub fn workers_up(&self) -> usize {
        self.workers.iter().filter(|w| w.is_up()).count()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(UserStoreMsg::Ping).await
    }

    /// Makes worker `index` fail. Test builds only.
    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, index: usize, reason: &str) -> Result<(), CallError> {
        let w = self.workers.get(index % self.workers.len().max(1)).ok_or(CallError::Unavailable("user_store"))?;
        w.cast(UserStoreMsg::Fail(reason.to_string()))
    }
}
