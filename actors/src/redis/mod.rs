//! The Redis actor: every Redis decision of the service, over one multiplexed connection (or a
//! cluster or Sentinel connection, see `redis_conn`). It is the SPEC's "RateLimiter/Blacklist";
//! operators see it as `rate_limiter` (the actor label of the metrics and logs, the test hook
//! `/api/v1/_test/fail/rate_limiter`), and those names stay, as do the Redis keys.
//!
//! Its commands live with the concern they serve:
//! - [`rate`]: rate-limit windows (GCRA on Redis's clock).
//! - [`lockout`]: the login gate, which reserves each password check of an account and locks it
//!   after too many failures.
//! - [`client_gate`]: the same for OAuth clients' credentials (per-client limit, lockout), and
//!   the replay guard of client assertions.
//! - [`revocation`]: the access-token `jti` blacklist, the per-user "not before" markers of
//!   logout-all, the per-session revocation markers, and the check of all three that every
//!   authenticated request makes.
//! - [`epoch`]: the authorization epoch, a random value that changes whenever any user's roles
//!   or standing change, so that every instance can cache role look-ups and still drop them at
//!   once.
//!
//! Each request is one [`Command`]: a struct whose `run` is its Redis work. The actor hands
//! every command to a short task on its one multiplexed connection and returns to its mailbox,
//! so a slow Redis round trip never queues the requests behind it; the reply goes back through
//! the same generic path for every command. Every key comes from the [`Keyspace`], under the
//! configured prefix, so several deployments (or test runs) can share one Redis without
//! colliding, and the keys of one script share a hash slot.
//!
//! In this module and its children `redis::` is the client crate; this module is `crate::redis`.

pub mod client_gate;
pub mod epoch;
pub mod lockout;
pub mod rate;
pub mod revocation;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tracing::Instrument;

use crate::handle::{CallError, Endpoint};
use crate::keyspace::Keyspace;
use crate::metrics::ActorMetrics;
use crate::redis_conn::RedisConn;
use crate::supervised::{Mail, Supervised};

/// Failures of a Redis-backed decision.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// Redis is unreachable or answered with an error. Callers fail closed.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

/// One request to Redis: its fields are its arguments, `run` its commands. The actor runs every
/// command the same way (a task on the shared connection, the reply sent back, errors counted).
pub trait Command: Send + 'static {
    type Output: Send + 'static;

    fn run(self, conn: RedisConn, keys: Keyspace) -> impl Future<Output = redis::RedisResult<Self::Output>> + Send;
}

/// A command with its reply port, its output type erased.
pub trait RedisJob: Send {
    /// Starts the command on `conn`; the returned future sends the reply when it completes.
    fn start(
        self: Box<Self>,
        conn: RedisConn,
        keys: Keyspace,
        metrics: ActorMetrics,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct Pending<C: Command> {
    command: C,
    reply: RpcReplyPort<Result<C::Output, RedisError>>,
}

impl<C: Command> RedisJob for Pending<C> {
    fn start(
        self: Box<Self>,
        conn: RedisConn,
        keys: Keyspace,
        metrics: ActorMetrics,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Pending { command, reply } = *self;
        Box::pin(async move {
            let _ = reply.send(command.run(conn, keys).await.map_err(|e| counted(&metrics, e)));
        })
    }
}

/// `PING` (readiness probe).
pub struct Ping;

impl Command for Ping {
    type Output = ();

    async fn run(self, mut conn: RedisConn, _: Keyspace) -> redis::RedisResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

/// Messages the Redis actor handles.
pub enum RedisMsg {
    /// Run one command and reply with its result.
    Run(Box<dyn RedisJob>),
}

/// Startup arguments, reused on every restart.
#[derive(Clone)]
pub struct RedisArgs {
    pub conn: RedisConn,
    /// Where the actor publishes its connection for the token checks its handle runs.
    pub publish: Arc<watch::Sender<Option<RedisConn>>>,
    pub keys: Keyspace,
    pub metrics: ActorMetrics,
}

/// The Redis actor's state: what each command's task needs.
pub struct Redis {
    conn: RedisConn,
    keys: Keyspace,
    metrics: ActorMetrics,
}

impl Supervised for Redis {
    type Msg = RedisMsg;
    type Args = RedisArgs;

    async fn start(_: ActorRef<Mail<RedisMsg>>, args: RedisArgs) -> Result<Self, ActorProcessingErr> {
        args.publish.send_replace(Some(args.conn.clone()));
        Ok(Redis { conn: args.conn, keys: args.keys, metrics: args.metrics })
    }

    async fn handle(&mut self, msg: RedisMsg) -> Result<(), ActorProcessingErr> {
        let RedisMsg::Run(job) = msg;
        tokio::spawn(job.start(self.conn.clone(), self.keys.clone(), self.metrics.clone()).in_current_span());
        Ok(())
    }
}

/// The typed handle to the Redis actor.
///
/// Token checks, the one Redis read on every authenticated request, do not travel through the
/// mailbox: the handle runs them in the caller's task on the connection the actor published,
/// under the same rules as a call (refused at once while the actor is down, bounded in number,
/// timed out, counted). That saves two task hand-offs per request. Everything that writes goes
/// through the actor, as a [`Command`].
#[derive(Clone)]
pub struct RedisHandle {
    endpoint: Endpoint<RedisMsg>,
    conn: watch::Receiver<Option<RedisConn>>,
    keys: Keyspace,
    metrics: ActorMetrics,
}

impl RedisHandle {
    pub(crate) fn new(
        endpoint: Endpoint<RedisMsg>,
        conn: watch::Receiver<Option<RedisConn>>,
        keys: Keyspace,
        metrics: ActorMetrics,
    ) -> Self {
        RedisHandle { endpoint, conn, keys, metrics }
    }

    /// The address of the Redis master in use, when it is found through Sentinel.
    pub fn master_address(&self) -> Option<String> {
        self.conn.borrow().as_ref().and_then(RedisConn::master_address)
    }

    /// The keyspace every command of this handle uses.
    pub fn keyspace(&self) -> &Keyspace {
        &self.keys
    }

    /// Runs one command through the actor, within the call timeout.
    pub async fn run<C: Command>(&self, command: C) -> Result<C::Output, RedisError> {
        self.endpoint.call(|reply| RedisMsg::Run(Box::new(Pending { command, reply }))).await?
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.run(Ping).await
    }

    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.endpoint.fail(reason)
    }
}

/// Whether `url` parses as a Redis connection URL.
pub fn valid_url(url: &str) -> bool {
    redis::Client::open(url).is_ok()
}

/// Counts an error of the client crate (`redis::RedisError`) and turns it into this module's.
fn counted(metrics: &ActorMetrics, e: redis::RedisError) -> RedisError {
    metrics.redis_errors.inc();
    RedisError::Unavailable(e.to_string())
}

/// `SET key 1 PX ttl`: a marker Redis drops by itself after `ttl` (at least a millisecond, since
/// Redis refuses an expiry of zero).
fn marker(key: String, ttl: Duration) -> redis::Cmd {
    let mut set = redis::cmd("SET");
    set.arg(key).arg(1).arg("PX").arg(millis(ttl).max(1));
    set
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
