//! The RateLimiter/Blacklist actor: every Redis decision of the service. Rate-limit windows,
//! the access-token `jti` blacklist and the per-user "not before" markers of logout-all.
//!
//! Redis commands are pipelined over one multiplexed connection: the actor hands each request
//! to a short task on that connection and returns to its mailbox, so a slow Redis round trip
//! never queues the requests behind it. Every key carries the configured prefix, so several
//! deployments (or test runs) can share one Redis without colliding.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use redis::aio::ConnectionManager;

use crate::handle::{CallError, Endpoint};
use crate::metrics::ActorMetrics;

/// Failures of a Redis-backed decision.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// Redis is unreachable or answered with an error. Callers fail closed.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

/// Messages the RateLimiter/Blacklist handles.
pub enum RateLimiterMsg {
    /// `PING` Redis (readiness probe).
    Ping(RpcReplyPort<Result<(), LimiterError>>),
    /// Fail on purpose, to exercise supervision. Test builds only.
    #[cfg(feature = "failure-hook")]
    Fail(String),
}

/// Startup arguments, reused on every restart.
#[derive(Clone)]
pub struct RateLimiterArgs {
    pub redis: ConnectionManager,
    /// Prepended to every key this actor touches.
    pub prefix: String,
    pub metrics: ActorMetrics,
}

pub struct RateLimiterState {
    args: RateLimiterArgs,
}

pub struct RateLimiter;

impl Actor for RateLimiter {
    type Msg = RateLimiterMsg;
    type State = RateLimiterState;
    type Arguments = RateLimiterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RateLimiterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RateLimiterState { args })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut conn = state.args.redis.clone();
        let metrics = state.args.metrics.clone();
        match msg {
            RateLimiterMsg::Ping(reply) => {
                tokio::spawn(async move {
                    let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
                    let _ = reply.send(r.map(|_| ()).map_err(|e| redis_error(&metrics, e)));
                });
            }
            #[cfg(feature = "failure-hook")]
            RateLimiterMsg::Fail(reason) => return Err(reason.into()),
        }
        Ok(())
    }
}

/// Whether `url` parses as a Redis connection URL.
pub fn valid_url(url: &str) -> bool {
    redis::Client::open(url).is_ok()
}

fn redis_error(metrics: &ActorMetrics, e: redis::RedisError) -> LimiterError {
    metrics.redis_errors.inc();
    LimiterError::Unavailable(e.to_string())
}

/// The typed handle to the RateLimiter/Blacklist.
#[derive(Clone)]
pub struct RateLimiterHandle {
    endpoint: Endpoint<RateLimiterMsg>,
}

impl RateLimiterHandle {
    pub(crate) fn new(endpoint: Endpoint<RateLimiterMsg>) -> Self {
        RateLimiterHandle { endpoint }
    }

    async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<R, LimiterError>>) -> RateLimiterMsg,
    ) -> Result<R, LimiterError> {
        self.endpoint.call(build).await?
    }

    pub async fn ping(&self) -> Result<(), LimiterError> {
        self.call(RateLimiterMsg::Ping).await
    }

    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.endpoint.cast(RateLimiterMsg::Fail(reason.to_string()))
    }
}
