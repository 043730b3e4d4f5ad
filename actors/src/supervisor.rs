//! The root of the actor tree. It validates the dependencies at startup, spawns and links
//! every child, and restarts a failed child after an exponential backoff. A child that fails
//! more than `max_restarts` times within `window` escalates: the supervisor stops itself and
//! its children, and the server turns that into a clean exit with a non-zero status, for the
//! orchestrator to restart the process (OTP's "restart intensity").
//!
//! ```text
//! Supervisor
//! ├── KeyManager
//! ├── Database worker 0..N    (over one deadpool-postgres pool)
//! ├── Redis                   (over one multiplexed Redis connection)
//! ├── Mailer                  (delivers the mail outbox; SMTP in tasks of its own)
//! └── Health
//! ```
//!
//! Every failure and every restart is logged (actor, reason, attempt, backoff) and counted in
//! [`ActorMetrics`]; the Health actor is told of each state change.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis_conn::RedisConn;
use crate::restart::{FailureHistory, Verdict};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::watch;

use crate::db::{self, Database, DatabaseArgs, DatabaseHandle, DatabaseMsg, SetupError};
use crate::handle::{Endpoint, Slot};
use crate::health::{ChildState, Health, HealthArgs, HealthHandle, HealthMsg};
use crate::key_manager::{KeyManager, KeyManagerArgs, KeyManagerHandle, KeyManagerMsg};
use crate::keys::{KeyError, KeySet};
use crate::mailer::{Mailer, MailerArgs, MailerHandle, MailerMsg, MailerSettings};
use crate::metrics::{ActorMetrics, actor_label};
use crate::redis::{Redis, RedisArgs, RedisHandle, RedisMsg};

/// Everything the tree needs, each actor's slice in its own field. Its `Debug` leaves out the
/// database and Redis URLs, which may carry passwords.
#[derive(Clone)]
pub struct Settings {
    pub keys_dir: PathBuf,
    pub active_kid: Option<String>,
    /// Whether a key directory open to others is refused or loaded with a warning.
    pub keys_permissions: crate::keys::PermissionPolicy,
    /// How often the KeyManager checks `keys.json` for changes (zero: only on reload).
    pub keys_poll_interval: Duration,
    /// Tokens each key snapshot remembers as verified.
    pub token_cache_size: usize,
    pub database_url: String,
    /// Connections in the PostgreSQL pool.
    pub database_pool_size: usize,
    /// Database worker actors (`USER_STORE_WORKERS`).
    pub user_store_workers: usize,
    pub redis: crate::redis_conn::RedisTarget,
    /// Every Redis key, under the configured prefix.
    pub keyspace: crate::keyspace::Keyspace,
    /// Bound on connecting to PostgreSQL/Redis and on each of their operations.
    pub dependency_timeout: Duration,
    /// Bound on every actor call.
    pub call_timeout: Duration,
    /// Calls allowed to wait on one actor before new ones are refused.
    pub mailbox_capacity: usize,
    /// Bound on each readiness probe.
    pub probe_timeout: Duration,
    pub restart: RestartPolicy,
    /// The Mailer's SMTP server, sender and retry policy.
    pub mail: MailerSettings,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("keys_dir", &self.keys_dir)
            .field("active_kid", &self.active_kid)
            .field("database_url", &"***")
            .field("redis", &self.redis)
            .field("user_store_workers", &self.user_store_workers)
            .field("restart", &self.restart)
            .field("mail", &self.mail)
            .finish_non_exhaustive()
    }
}

pub use crate::restart::RestartPolicy;

/// Why the tree could not start. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Database(#[from] SetupError),
    #[error("REDIS_URL is not a valid Redis URL: {0}")]
    RedisUrl(String),
    #[error("Redis is unreachable: {0}")]
    RedisUnreachable(String),
    #[error("actor system failed to start: {0}")]
    Spawn(String),
}

/// The handles the rest of the program uses. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub keys: KeyManagerHandle,
    pub db: DatabaseHandle,
    pub redis: RedisHandle,
    pub health: HealthHandle,
    /// Wake it after committing a mail to the outbox.
    pub mailer: MailerHandle,
    pub metrics: ActorMetrics,
}

/// The kinds of child, with the worker index for the Database pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Child {
    KeyManager,
    Database(usize),
    Redis,
    Mailer,
    Health,
}

impl Child {
    /// Every kind, as the per-actor metrics label them.
    const KINDS: [&'static str; 5] = ["key_manager", "user_store", "rate_limiter", "mailer", "health"];

    fn kind(self) -> &'static str {
        match self {
            Child::KeyManager => "key_manager",
            Child::Database(_) => "user_store",
            Child::Redis => "rate_limiter",
            Child::Mailer => "mailer",
            Child::Health => "health",
        }
    }

    fn name(self) -> String {
        match self {
            Child::Database(i) => format!("user_store-{i}"),
            other => other.kind().to_string(),
        }
    }
}

/// The slots the supervisor fills as children start and empties as they die.
struct Slots {
    keys: Arc<Slot<KeyManagerMsg>>,
    db: Vec<Arc<Slot<DatabaseMsg>>>,
    redis: Arc<Slot<RedisMsg>>,
    mailer: Arc<Slot<MailerMsg>>,
    health: Arc<Slot<HealthMsg>>,
}

/// Messages the supervisor handles (besides supervision events).
pub enum SupervisorMsg {
    /// Restart a child whose backoff has elapsed. Internal.
    #[doc(hidden)]
    Restart(ChildRef),
}

/// Opaque name of a child, for [`SupervisorMsg::Restart`].
#[derive(Debug, Clone, Copy)]
pub struct ChildRef(Child);

/// Startup arguments of the supervisor: built by [`start`].
pub struct SupervisorArgs {
    settings: Settings,
    services: Services,
    slots: Slots,
    publish: Arc<watch::Sender<Option<Arc<KeySet>>>>,
    publish_redis: Arc<watch::Sender<Option<RedisConn>>>,
}

pub struct SupervisorState {
    settings: Settings,
    services: Services,
    slots: Slots,
    publish: Arc<watch::Sender<Option<Arc<KeySet>>>>,
    publish_redis: Arc<watch::Sender<Option<RedisConn>>>,
    pool: deadpool_postgres::Pool,
    redis: RedisConn,
    /// Live children by actor id.
    running: HashMap<ActorId, Child>,
    /// Recent failure times per child, for the intensity limit and the backoff exponent.
    failures: HashMap<Child, FailureHistory>,
    states: BTreeMap<String, ChildState>,
    /// Whether the Mailer logged its start (once per process, not per restart).
    mailer_announced: Arc<std::sync::atomic::AtomicBool>,
}

pub struct Supervisor;

/// Builds the handles, then spawns the supervisor, which validates keys, PostgreSQL (reachable
/// and migrated) and Redis before it spawns its children. Returns the handles, the supervisor
/// and its join handle (which completes when the tree has stopped, normally or by escalation).
pub async fn start(
    settings: Settings,
    metrics: ActorMetrics,
) -> Result<(Services, ActorRef<SupervisorMsg>, tokio::task::JoinHandle<()>), StartupError> {
    metrics.initialise(&Child::KINDS);
    let (publish, keys_rx) = watch::channel(None);
    let publish = Arc::new(publish);
    let (publish_redis, redis_rx) = watch::channel(None);
    let publish_redis = Arc::new(publish_redis);
    let slots = Slots {
        keys: Arc::default(),
        db: (0..settings.user_store_workers.max(1)).map(|_| Arc::default()).collect(),
        redis: Arc::default(),
        mailer: Arc::default(),
        health: Arc::default(),
    };
    fn endpoint<M: ractor::Message>(
        name: &'static str,
        slot: Arc<Slot<M>>,
        s: &Settings,
        m: &ActorMetrics,
    ) -> Endpoint<M> {
        Endpoint::new(name, slot, s.call_timeout, s.mailbox_capacity, m.clone())
    }
    let (s, m) = (&settings, &metrics);
    let redis = RedisHandle::new(
        endpoint("rate_limiter", slots.redis.clone(), s, m),
        redis_rx,
        settings.keyspace.clone(),
        metrics.clone(),
    );
    let services = Services {
        keys: KeyManagerHandle::new(endpoint("key_manager", slots.keys.clone(), s, m), keys_rx),
        db: DatabaseHandle::new(
            slots.db.iter().map(|slot| endpoint("user_store", slot.clone(), s, m)).collect(),
            redis.clone(),
        ),
        redis,
        health: HealthHandle::new(endpoint("health", slots.health.clone(), s, m)),
        mailer: MailerHandle::new(endpoint("mailer", slots.mailer.clone(), s, m)),
        metrics: metrics.clone(),
    };
    let args = SupervisorArgs { settings, services: services.clone(), slots, publish, publish_redis };
    match Actor::spawn(None, Supervisor, args).await {
        Ok((actor, join)) => Ok((services, actor, join)),
        Err(SpawnErr::StartupFailed(e)) => Err(match e.downcast::<StartupError>() {
            Ok(startup) => *startup,
            Err(other) => StartupError::Spawn(db::error_chain(other.as_ref())),
        }),
        Err(other) => Err(StartupError::Spawn(other.to_string())),
    }
}

async fn connect_postgres(settings: &Settings) -> Result<deadpool_postgres::Pool, StartupError> {
    let pool = db::build_pool(&settings.database_url, settings.database_pool_size, settings.dependency_timeout)?;
    let client = pool.get().await.map_err(|e| SetupError::Unreachable(db::error_chain(&e)))?;
    db::check_schema(&client).await?;
    Ok(pool)
}

async fn connect_redis(settings: &Settings) -> Result<RedisConn, StartupError> {
    if let Err(e) = settings.redis.check() {
        return Err(StartupError::RedisUrl(e));
    }
    let connect = RedisConn::connect(&settings.redis, settings.dependency_timeout);
    match tokio::time::timeout(settings.dependency_timeout * 4, connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(StartupError::RedisUnreachable(e.to_string())),
        Err(_) => Err(StartupError::RedisUnreachable("connection timed out".into())),
    }
}

impl SupervisorState {
    async fn spawn_child(&mut self, myself: &ActorRef<SupervisorMsg>, child: Child) -> Result<(), SpawnErr> {
        let cell: ActorCell = myself.get_cell();
        let id = match child {
            Child::KeyManager => {
                let args = KeyManagerArgs {
                    dir: self.settings.keys_dir.clone(),
                    active_kid: self.settings.active_kid.clone(),
                    permissions: self.settings.keys_permissions,
                    publish: self.publish.clone(),
                    poll_interval: self.settings.keys_poll_interval,
                    cache_capacity: self.settings.token_cache_size,
                    cache_counters: self.services.metrics.token_counters(),
                };
                self.slots.keys.spawn_linked::<KeyManager>(args, cell).await?
            }
            Child::Database(i) => {
                let args = DatabaseArgs { pool: self.pool.clone(), metrics: self.services.metrics.clone() };
                self.slots.db[i].spawn_linked::<Database>(args, cell).await?
            }
            Child::Redis => {
                let args = RedisArgs {
                    conn: self.redis.clone(),
                    publish: self.publish_redis.clone(),
                    keys: self.settings.keyspace.clone(),
                    metrics: self.services.metrics.clone(),
                };
                self.slots.redis.spawn_linked::<Redis>(args, cell).await?
            }
            Child::Mailer => {
                let args = MailerArgs {
                    settings: self.settings.mail.clone(),
                    db: self.services.db.clone(),
                    metrics: self.services.metrics.clone(),
                    call_timeout: self.settings.call_timeout,
                    announced: self.mailer_announced.clone(),
                };
                self.slots.mailer.spawn_linked::<Mailer>(args, cell).await?
            }
            Child::Health => {
                self.states.insert(child.name(), ChildState::Running);
                let args = HealthArgs {
                    keys: self.services.keys.clone(),
                    db: self.services.db.clone(),
                    redis: self.services.redis.clone(),
                    probe_timeout: self.settings.probe_timeout,
                    children: self.states.clone(),
                };
                self.slots.health.spawn_linked::<Health>(args, cell).await?
            }
        };
        self.running.insert(id, child);
        self.set_state(child, ChildState::Running);
        Ok(())
    }

    fn clear_slot(&self, child: Child) {
        match child {
            Child::KeyManager => self.slots.keys.clear(),
            Child::Database(i) => self.slots.db[i].clear(),
            Child::Redis => self.slots.redis.clear(),
            Child::Mailer => self.slots.mailer.clear(),
            Child::Health => self.slots.health.clear(),
        }
    }

    fn set_state(&mut self, child: Child, state: ChildState) {
        self.states.insert(child.name(), state.clone());
        self.services.health.child_state(child.name(), state);
    }

    /// Records a failure of `child` and schedules its restart, or escalates when the
    /// restart-intensity limit is exceeded.
    fn on_child_down(&mut self, myself: &ActorRef<SupervisorMsg>, child: Child, reason: &str) {
        let policy = &self.settings.restart;
        let metrics = &self.services.metrics;
        metrics.failures.get_or_create(&actor_label(child.kind())).inc();
        let verdict = self.failures.entry(child).or_default().record(Instant::now(), policy);
        self.clear_slot(child);
        let (attempt, backoff) = match verdict {
            Verdict::Restart { attempt, backoff } => (attempt, backoff),
            Verdict::Escalate { attempt } => {
                tracing::error!(
                    actor = child.kind(), child = %child.name(), reason, attempt,
                    max_restarts = policy.max_restarts, window_secs = policy.window.as_secs(),
                    "restart intensity exceeded; stopping the actor system"
                );
                self.set_state(child, ChildState::Failed);
                myself.stop(Some(format!("restart intensity exceeded by {}", child.name())));
                return;
            }
        };
        tracing::warn!(
            actor = child.kind(), child = %child.name(), reason, attempt,
            backoff_ms = backoff.as_millis() as u64, "actor failed; restarting after backoff"
        );
        self.set_state(child, ChildState::Restarting);
        myself.send_after(backoff, move || SupervisorMsg::Restart(ChildRef(child)));
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let SupervisorArgs { settings, services, slots, publish, publish_redis } = args;
        // Validate in the order an operator fixes things: keys, then PostgreSQL, then Redis.
        KeySet::load_with(&settings.keys_dir, settings.active_kid.as_deref(), settings.keys_permissions)
            .map_err(StartupError::from)?;
        let pool = connect_postgres(&settings).await?;
        services.db.set_pool(pool.clone());
        let redis = connect_redis(&settings).await?;
        let workers = slots.db.len();
        let mut state = SupervisorState {
            settings,
            services,
            slots,
            publish,
            publish_redis,
            pool,
            redis,
            running: HashMap::new(),
            failures: HashMap::new(),
            states: BTreeMap::new(),
            mailer_announced: Arc::default(),
        };
        let mut children = vec![Child::KeyManager, Child::Redis];
        children.extend((0..workers).map(Child::Database));
        children.push(Child::Mailer);
        for child in &children {
            state.states.insert(child.name(), ChildState::Running);
        }
        children.push(Child::Health);
        for child in children {
            state
                .spawn_child(&myself, child)
                .await
                .map_err(|e| StartupError::Spawn(format!("{}: {}", child.name(), db::error_chain(&e))))?;
        }
        tracing::info!(user_store_workers = workers, "actor system started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(ChildRef(child)) => match state.spawn_child(&myself, child).await {
                Ok(()) => {
                    state.services.metrics.restarts.get_or_create(&actor_label(child.kind())).inc();
                    tracing::info!(actor = child.kind(), child = %child.name(), "actor restarted");
                }
                Err(e) => {
                    let reason = format!("restart failed: {}", db::error_chain(&e));
                    state.on_child_down(&myself, child, &reason);
                }
            },
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(child) = state.running.remove(&cell.get_id()) {
                    state.on_child_down(&myself, child, &err.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                // Children stop on their own only when something is wrong; treat it as a failure.
                if let Some(child) = state.running.remove(&cell.get_id()) {
                    let reason = reason.unwrap_or_else(|| "stopped unexpectedly".into());
                    state.on_child_down(&myself, child, &reason);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        for child in state.running.values() {
            state.clear_slot(*child);
        }
        myself.stop_children_and_wait(None, Some(Duration::from_secs(5))).await;
        state.pool.close();
        tracing::info!("actor system stopped");
        Ok(())
    }
}
