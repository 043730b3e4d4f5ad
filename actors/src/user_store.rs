//! The UserStore: a pool of worker actors over one deadpool-postgres pool. Every read and
//! write of users, roles, refresh tokens, login history and security events goes through it.
//!
//! The handle spreads calls round-robin over the workers that are up, preferring idle ones and
//! skipping any that is restarting, so one failed worker costs capacity, not availability.
//! The SQL itself lives in [`crate::db`]; a worker takes a pooled connection per message and
//! runs the matching query function.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::db::events::EventRow;
use crate::db::history::HistoryRow;
use crate::db::roles::{AssignOutcome, RoleRecord, RoleRef};
use crate::db::sessions::{NewSession, NewToken, RotateOutcome, RotationRules, SessionRow, StartOutcome};
use crate::db::users::{Credentials, PasswordChange, ProfileOutcome, UserRecord};
use crate::db::{self, events, history, roles, sessions, users};
use crate::handle::{CallError, Endpoint};
use crate::metrics::ActorMetrics;

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

/// Messages a UserStore worker handles.
pub enum UserStoreMsg {
    /// Run `SELECT 1` on a pooled connection (readiness probe).
    Ping(Reply<()>),
    /// Create a user holding the `user` role.
    CreateUser { username: String, email: String, password_hash: String, reply: Reply<UserRecord> },
    /// Find a user by username or email, with its password hash.
    FindCredentials { login: String, reply: Reply<Option<Credentials>> },
    /// Fetch a user with its current roles.
    GetUser { id: Uuid, reply: Reply<Option<UserRecord>> },
    /// Fetch a user's stored password hash and password version.
    PasswordHash { id: Uuid, reply: Reply<Option<(String, i32)>> },
    /// Replace a user's password hash `old` by its re-hash `new` (current parameters), unless
    /// it changed meanwhile; replies whether it was replaced.
    RehashPassword { id: Uuid, old: String, new: String, reply: Reply<bool> },
    /// Change username and/or password; a new password revokes every session but `keep_family`
    /// and is applied only if the verified password version is still current.
    UpdateProfile {
        id: Uuid,
        username: Option<String>,
        password: Option<PasswordChange>,
        keep_family: Option<Uuid>,
        reply: Reply<ProfileOutcome>,
    },
    /// Delete a user; `actor` is the admin who did it. Replies with its sessions, or `None`.
    DeleteUser { id: Uuid, actor: Option<Uuid>, reply: Reply<Option<Vec<Uuid>>> },
    /// Open a session and record the successful login, atomically, if the user's password is
    /// still the version the login verified.
    StartSession { session: NewSession, reply: Reply<StartOutcome> },
    /// Record a failed login (security event, and a history row for a known user).
    RecordLoginFailure { user_id: Option<Uuid>, ip: Option<String>, user_agent: Option<String>, reply: Reply<()> },
    /// Rotate a refresh token (compare-and-swap); see [`crate::db::sessions`].
    Rotate {
        presented: Vec<u8>,
        successor: NewToken,
        sealed: Vec<u8>,
        rules: RotationRules,
        ip: Option<String>,
        reply: Reply<RotateOutcome>,
    },
    /// Revoke the family of a presented refresh token (logout).
    RevokeByToken { presented: Vec<u8>, reply: Reply<Option<(Uuid, Uuid)>> },
    /// Revoke one session of a user.
    RevokeSession { user_id: Uuid, family_id: Uuid, reply: Reply<bool> },
    /// Revoke every session of a user; replies with the sessions that were live.
    RevokeAll { user_id: Uuid, reply: Reply<Vec<Uuid>> },
    /// List a user's live sessions.
    ListSessions { user_id: Uuid, reply: Reply<Vec<SessionRow>> },
    /// One page of a user's login history and the total.
    History { user_id: Uuid, limit: i64, offset: i64, reply: Reply<(Vec<HistoryRow>, i64)> },
    /// Record a security event.
    RecordEvent {
        event_type: &'static str,
        user_id: Option<Uuid>,
        actor_id: Option<Uuid>,
        ip: Option<String>,
        detail: serde_json::Value,
        reply: Reply<()>,
    },
    /// One page of security events and the total.
    Events {
        event_type: Option<String>,
        user_id: Option<Uuid>,
        limit: i64,
        offset: i64,
        reply: Reply<(Vec<EventRow>, i64)>,
    },
    /// Create a role; `actor` is the admin.
    CreateRole { name: String, description: Option<String>, actor: Uuid, reply: Reply<RoleRecord> },
    /// List every role.
    ListRoles(Reply<Vec<RoleRecord>>),
    /// Partially update a role (`description: Some(None)` clears it).
    UpdateRole {
        id: Uuid,
        name: Option<String>,
        description: Option<Option<String>>,
        actor: Uuid,
        reply: Reply<Option<RoleRecord>>,
    },
    /// Delete a role and its grants.
    DeleteRole { id: Uuid, actor: Uuid, reply: Reply<bool> },
    /// Grant a role (by id or name) to a user.
    AssignRole { user_id: Uuid, role: RoleRef, actor: Uuid, reply: Reply<AssignOutcome> },
    /// Withdraw a role from a user.
    RemoveRole { user_id: Uuid, role_id: Uuid, actor: Uuid, reply: Reply<bool> },
    /// Whether a user holds a role now.
    CheckRole { user_id: Uuid, role_name: String, reply: Reply<bool> },
    /// One page of users with their roles, and the total.
    UsersPage { limit: i64, offset: i64, reply: Reply<(Vec<UserRecord>, i64)> },
    /// Whether a role of this name exists.
    RoleExists { name: String, reply: Reply<bool> },
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

/// Answers `reply` with the result of `$work`, counting database errors. A try that
/// PostgreSQL aborted for conflicting with a concurrent transaction is run again (it wrote
/// nothing), up to [`CONTENTION_ATTEMPTS`] tries.
macro_rules! answer {
    ($state:expr, $reply:expr, $work:expr) => {{
        let mut attempt = 1;
        let result: Result<_, StoreError> = loop {
            let result: Result<_, StoreError> = async { $work }.await;
            match result {
                Err(StoreError::Contention) if attempt < CONTENTION_ATTEMPTS => {
                    $state.metrics.postgres_contention.inc();
                    attempt += 1;
                }
                other => break other,
            }
        };
        match &result {
            Err(StoreError::Unavailable(_)) => {
                $state.metrics.postgres_errors.inc();
            }
            Err(StoreError::Contention) => {
                $state.metrics.postgres_contention.inc();
            }
            _ => {}
        }
        let _ = $reply.send(result);
    }};
}

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
        let pool = state.pool.clone();
        match msg {
            UserStoreMsg::Ping(reply) => answer!(state, reply, {
                pool.get().await?.query_one("SELECT 1", &[]).await?;
                Ok(())
            }),
            UserStoreMsg::CreateUser { username, email, password_hash, reply } => answer!(state, reply, {
                Ok(users::create(&mut pool.get().await?, &username, &email, &password_hash).await?)
            }),
            UserStoreMsg::FindCredentials { login, reply } => {
                answer!(state, reply, Ok(users::find_credentials(&pool.get().await?, &login).await?))
            }
            UserStoreMsg::GetUser { id, reply } => answer!(state, reply, Ok(users::get(&pool.get().await?, id).await?)),
            UserStoreMsg::PasswordHash { id, reply } => {
                answer!(state, reply, Ok(users::password_hash(&pool.get().await?, id).await?))
            }
            UserStoreMsg::RehashPassword { id, old, new, reply } => {
                answer!(state, reply, Ok(users::rehash_password(&pool.get().await?, id, &old, &new).await?))
            }
            UserStoreMsg::UpdateProfile { id, username, password, keep_family, reply } => answer!(state, reply, {
                let mut client = pool.get().await?;
                Ok(users::update_profile(&mut client, id, username.as_deref(), password.as_ref(), keep_family).await?)
            }),
            UserStoreMsg::DeleteUser { id, actor, reply } => {
                answer!(state, reply, Ok(users::delete(&mut pool.get().await?, id, actor).await?))
            }
            UserStoreMsg::StartSession { session, reply } => {
                answer!(state, reply, Ok(sessions::start(&mut pool.get().await?, &session).await?))
            }
            UserStoreMsg::RecordLoginFailure { user_id, ip, user_agent, reply } => answer!(state, reply, {
                let client = pool.get().await?;
                Ok(history::record_failure(&client, user_id, ip.as_deref(), user_agent.as_deref()).await?)
            }),
            UserStoreMsg::Rotate { presented, successor, sealed, rules, ip, reply } => answer!(state, reply, {
                let mut client = pool.get().await?;
                Ok(sessions::rotate(&mut client, &presented, &successor, &sealed, rules, ip.as_deref()).await?)
            }),
            UserStoreMsg::RevokeByToken { presented, reply } => {
                answer!(state, reply, Ok(sessions::revoke_by_token(&mut pool.get().await?, &presented).await?))
            }
            UserStoreMsg::RevokeSession { user_id, family_id, reply } => {
                answer!(state, reply, Ok(sessions::revoke_one(&mut pool.get().await?, user_id, family_id).await?))
            }
            UserStoreMsg::RevokeAll { user_id, reply } => {
                answer!(state, reply, Ok(sessions::revoke_all(&mut pool.get().await?, user_id).await?))
            }
            UserStoreMsg::ListSessions { user_id, reply } => {
                answer!(state, reply, Ok(sessions::list(&pool.get().await?, user_id).await?))
            }
            UserStoreMsg::History { user_id, limit, offset, reply } => {
                answer!(state, reply, Ok(history::page(&pool.get().await?, user_id, limit, offset).await?))
            }
            UserStoreMsg::RecordEvent { event_type, user_id, actor_id, ip, detail, reply } => answer!(state, reply, {
                let client = pool.get().await?;
                Ok(events::record_in(&client, event_type, user_id, actor_id, ip.as_deref(), detail.clone()).await?)
            }),
            UserStoreMsg::Events { event_type, user_id, limit, offset, reply } => answer!(state, reply, {
                let client = pool.get().await?;
                Ok(events::page(&client, event_type.as_deref(), user_id, limit, offset).await?)
            }),
            UserStoreMsg::CreateRole { name, description, actor, reply } => answer!(state, reply, {
                Ok(roles::create(&mut pool.get().await?, &name, description.as_deref(), actor).await?)
            }),
            UserStoreMsg::ListRoles(reply) => answer!(state, reply, Ok(roles::list(&pool.get().await?).await?)),
            UserStoreMsg::UpdateRole { id, name, description, actor, reply } => answer!(state, reply, {
                let description = description.as_ref().map(|d| d.as_deref());
                Ok(roles::update(&mut pool.get().await?, id, name.as_deref(), description, actor).await?)
            }),
            UserStoreMsg::DeleteRole { id, actor, reply } => {
                answer!(state, reply, Ok(roles::delete(&mut pool.get().await?, id, actor).await?))
            }
            UserStoreMsg::AssignRole { user_id, role, actor, reply } => {
                answer!(state, reply, Ok(roles::assign(&mut pool.get().await?, user_id, &role, actor).await?))
            }
            UserStoreMsg::RemoveRole { user_id, role_id, actor, reply } => {
                answer!(state, reply, Ok(roles::remove(&mut pool.get().await?, user_id, role_id, actor).await?))
            }
            UserStoreMsg::CheckRole { user_id, role_name, reply } => {
                answer!(state, reply, Ok(roles::check(&pool.get().await?, user_id, &role_name).await?))
            }
            UserStoreMsg::UsersPage { limit, offset, reply } => {
                answer!(state, reply, Ok(roles::users_page(&pool.get().await?, limit, offset).await?))
            }
            UserStoreMsg::RoleExists { name, reply } => {
                answer!(state, reply, Ok(roles::exists(&pool.get().await?, &name).await?))
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
    /// The pool, once the supervisor has built it: read for the saturation metrics only.
    pool: Arc<std::sync::OnceLock<Pool>>,
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
    pub(crate) fn new(workers: Vec<Endpoint<UserStoreMsg>>) -> Self {
        UserStoreHandle { workers: workers.into(), next: Arc::new(AtomicUsize::new(0)), pool: Arc::default() }
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

    async fn call<R: Send + 'static>(&self, build: impl FnOnce(Reply<R>) -> UserStoreMsg) -> Result<R, StoreError> {
        self.pick()?.call(build).await?
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(UserStoreMsg::Ping).await
    }

    pub async fn create_user(
        &self,
        username: String,
        email: String,
        password_hash: String,
    ) -> Result<UserRecord, StoreError> {
        self.call(|reply| UserStoreMsg::CreateUser { username, email, password_hash, reply }).await
    }

    pub async fn find_credentials(&self, login: String) -> Result<Option<Credentials>, StoreError> {
        self.call(|reply| UserStoreMsg::FindCredentials { login, reply }).await
    }

    pub async fn get_user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        self.call(|reply| UserStoreMsg::GetUser { id, reply }).await
    }

    pub async fn password_hash(&self, id: Uuid) -> Result<Option<(String, i32)>, StoreError> {
        self.call(|reply| UserStoreMsg::PasswordHash { id, reply }).await
    }

    pub async fn rehash_password(&self, id: Uuid, old: String, new: String) -> Result<bool, StoreError> {
        self.call(|reply| UserStoreMsg::RehashPassword { id, old, new, reply }).await
    }

    pub async fn update_profile(
        &self,
        id: Uuid,
        username: Option<String>,
        password: Option<PasswordChange>,
        keep_family: Option<Uuid>,
    ) -> Result<ProfileOutcome, StoreError> {
        self.call(|reply| UserStoreMsg::UpdateProfile { id, username, password, keep_family, reply }).await
    }

    pub async fn delete_user(&self, id: Uuid, actor: Option<Uuid>) -> Result<Option<Vec<Uuid>>, StoreError> {
        self.call(|reply| UserStoreMsg::DeleteUser { id, actor, reply }).await
    }

    pub async fn start_session(&self, session: NewSession) -> Result<StartOutcome, StoreError> {
        self.call(|reply| UserStoreMsg::StartSession { session, reply }).await
    }

    pub async fn record_login_failure(
        &self,
        user_id: Option<Uuid>,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(|reply| UserStoreMsg::RecordLoginFailure { user_id, ip, user_agent, reply }).await
    }

    pub async fn rotate(
        &self,
        presented: Vec<u8>,
        successor: NewToken,
        sealed: Vec<u8>,
        rules: RotationRules,
        ip: Option<String>,
    ) -> Result<RotateOutcome, StoreError> {
        self.call(|reply| UserStoreMsg::Rotate { presented, successor, sealed, rules, ip, reply }).await
    }

    pub async fn revoke_by_token(&self, presented: Vec<u8>) -> Result<Option<(Uuid, Uuid)>, StoreError> {
        self.call(|reply| UserStoreMsg::RevokeByToken { presented, reply }).await
    }

    pub async fn revoke_session(&self, user_id: Uuid, family_id: Uuid) -> Result<bool, StoreError> {
        self.call(|reply| UserStoreMsg::RevokeSession { user_id, family_id, reply }).await
    }

    pub async fn revoke_all(&self, user_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        self.call(|reply| UserStoreMsg::RevokeAll { user_id, reply }).await
    }

    pub async fn list_sessions(&self, user_id: Uuid) -> Result<Vec<SessionRow>, StoreError> {
        self.call(|reply| UserStoreMsg::ListSessions { user_id, reply }).await
    }

    pub async fn history(&self, user_id: Uuid, limit: i64, offset: i64) -> Result<(Vec<HistoryRow>, i64), StoreError> {
        self.call(|reply| UserStoreMsg::History { user_id, limit, offset, reply }).await
    }

    pub async fn record_event(
        &self,
        event_type: &'static str,
        user_id: Option<Uuid>,
        actor_id: Option<Uuid>,
        ip: Option<String>,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.call(|reply| UserStoreMsg::RecordEvent { event_type, user_id, actor_id, ip, detail, reply }).await
    }

    pub async fn events(
        &self,
        event_type: Option<String>,
        user_id: Option<Uuid>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<EventRow>, i64), StoreError> {
        self.call(|reply| UserStoreMsg::Events { event_type, user_id, limit, offset, reply }).await
    }

    pub async fn create_role(
        &self,
        name: String,
        description: Option<String>,
        actor: Uuid,
    ) -> Result<RoleRecord, StoreError> {
        self.call(|reply| UserStoreMsg::CreateRole { name, description, actor, reply }).await
    }

    pub async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        self.call(UserStoreMsg::ListRoles).await
    }

    pub async fn update_role(
        &self,
        id: Uuid,
        name: Option<String>,
        description: Option<Option<String>>,
        actor: Uuid,
    ) -> Result<Option<RoleRecord>, StoreError> {
        self.call(|reply| UserStoreMsg::UpdateRole { id, name, description, actor, reply }).await
    }

    pub async fn delete_role(&self, id: Uuid, actor: Uuid) -> Result<bool, StoreError> {
        self.call(|reply| UserStoreMsg::DeleteRole { id, actor, reply }).await
    }

    pub async fn assign_role(&self, user_id: Uuid, role: RoleRef, actor: Uuid) -> Result<AssignOutcome, StoreError> {
        self.call(|reply| UserStoreMsg::AssignRole { user_id, role, actor, reply }).await
    }

    pub async fn remove_role(&self, user_id: Uuid, role_id: Uuid, actor: Uuid) -> Result<bool, StoreError> {
        self.call(|reply| UserStoreMsg::RemoveRole { user_id, role_id, actor, reply }).await
    }

    pub async fn check_role(&self, user_id: Uuid, role_name: String) -> Result<bool, StoreError> {
        self.call(|reply| UserStoreMsg::CheckRole { user_id, role_name, reply }).await
    }

    pub async fn users_page(&self, limit: i64, offset: i64) -> Result<(Vec<UserRecord>, i64), StoreError> {
        self.call(|reply| UserStoreMsg::UsersPage { limit, offset, reply }).await
    }

    pub async fn role_exists(&self, name: String) -> Result<bool, StoreError> {
        self.call(|reply| UserStoreMsg::RoleExists { name, reply }).await
    }

    /// Makes worker `index` fail. Test builds only.
    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, index: usize, reason: &str) -> Result<(), CallError> {
        let w = self.workers.get(index % self.workers.len().max(1)).ok_or(CallError::Unavailable("user_store"))?;
        w.cast(UserStoreMsg::Fail(reason.to_string()))
    }
}
