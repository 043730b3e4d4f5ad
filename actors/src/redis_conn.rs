//! The one Redis connection every instance shares, whichever way Redis is deployed.
//!
//! - **Single**: one URL, a multiplexed connection that reconnects by itself
//!   (`ConnectionManager`).
//! - **Sentinel**: the sentinels are asked for the current master (and the master is checked
//!   with `ROLE` before it is used); the connection to it reconnects by itself, and whenever a
//!   command fails as a failover makes it fail (the connection refused or dropped, a timeout,
//!   `READONLY` from a master turned replica) — and every second in any case — the sentinels
//!   are asked again, and a new master means a new connection. Writes that revoke (blacklist,
//!   logout-all and session markers, the authorization epoch) are followed by `WAIT` for
//!   `REDIS_WAIT_REPLICAS` replicas, so a revocation is acknowledged only once a replica holds
//!   it, and a failover cannot lose it.
//! - **Cluster**: the redis crate's cluster connection, which follows slot moves and failovers.
//!   Every multi-key script and `MGET` keeps its keys in one hash slot (see `keyspace`).
//!
//! [`RedisConn`] is cheap to clone and implements `ConnectionLike`, so every command runs on it
//! unchanged.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

/// How often a Sentinel deployment's master is looked up even when nothing failed.
const SENTINEL_RECHECK: Duration = Duration::from_secs(1);

/// Where Redis is.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server (`REDIS_URL`).
    Single { url: String },
    /// A master found through sentinels (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`); `node_url`
    /// (`REDIS_URL`, optional) gives the credentials and database of the master.
    Sentinel { sentinels: Vec<String>, master: String, node_url: Option<String>, wait_replicas: u32 },
    /// A cluster, by some of its nodes (`REDIS_CLUSTER_NODES`).
    Cluster { nodes: Vec<String> },
}

impl std::fmt::Debug for RedisTarget {
    // Only the shape: URLs may carry passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Single { .. } => f.write_str("Single(***)"),
            RedisTarget::Sentinel { sentinels, master, wait_replicas, .. } => f
                .debug_struct("Sentinel")
                .field("sentinels", &sentinels.len())
                .field("master", master)
                .field("wait_replicas", wait_replicas)
                .finish(),
            RedisTarget::Cluster { nodes } => f.debug_struct("Cluster").field("nodes", &nodes.len()).finish(),
        }
    }
}

impl RedisTarget {
    /// Whether the target's addresses parse; the reason otherwise.
    pub fn check(&self) -> Result<(), String> {
        let parses = |url: &str| url.into_connection_info().map(|_| ()).map_err(|e| e.to_string());
        match self {
            RedisTarget::Single { url } => parses(url),
            RedisTarget::Sentinel { sentinels, master, node_url, .. } => {
                if sentinels.is_empty() || master.is_empty() {
                    return Err("sentinel addresses and a master name are both needed".into());
                }
                sentinels.iter().try_for_each(|s| parses(&node_address(s)))?;
                node_url.as_deref().map_or(Ok(()), parses)
            }
            RedisTarget::Cluster { nodes } => {
                if nodes.is_empty() {
                    return Err("no cluster nodes".into());
                }
                nodes.iter().try_for_each(|n| parses(&node_address(n)))
            }
        }
    }
}

/// `host:port` as a URL; a URL as it is.
fn node_address(node: &str) -> String {
    if node.contains("://") { node.to_string() } else { format!("redis://{node}") }
}

/// The shared connection.
#[derive(Clone)]
pub struct RedisConn(Inner);

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    /// The deployment, and the master connection this clone has used so far: a clone keeps to
    /// one master, so that a `WAIT` counts the replicas of the master its write went to.
    Sentinel(Arc<Sentinel>, Option<Pinned>),
    Cluster(ClusterConnection),
}

/// A master connection and its generation (each new connection gets the next).
type Pinned = (u64, MultiplexedConnection);

struct Sentinel {
    client: tokio::sync::Mutex<SentinelClient>,
    timeout: Duration,
    /// The master's address and a connection to it; `None` after the connection failed, until
    /// the sentinels have been asked again. A connection never reconnects by itself: a master
    /// that died and came back empty (and not yet a replica) must not be written to.
    current: RwLock<Option<(String, u64, MultiplexedConnection)>>,
    generation: std::sync::atomic::AtomicU64,
    looking: AtomicBool,
    wait_replicas: u32,
    db: i64,
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

fn timed_out() -> RedisError {
    RedisError::from((ErrorKind::Io, "timed out"))
}

async fn within<T>(timeout: Duration, work: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(timed_out()))
}

impl RedisConn {
    /// Connects to `target`, each step bounded by `timeout`.
    pub async fn connect(target: &RedisTarget, timeout: Duration) -> RedisResult<RedisConn> {
        match target {
            RedisTarget::Single { url } => {
                let client = redis::Client::open(url.as_str())?;
                let manager = ConnectionManager::new_with_config(client, manager_config(timeout));
                Ok(RedisConn(Inner::Single(within(timeout * 2, manager).await?)))
            }
            RedisTarget::Sentinel { sentinels, master, node_url, wait_replicas } => {
                let mut node = SentinelNodeConnectionInfo::default();
                let mut db = 0;
                if let Some(url) = node_url {
                    let info = url.as_str().into_connection_info()?;
                    db = info.redis_settings().db();
                    node = node.set_redis_connection_info(info.redis_settings().clone());
                }
                let addresses: Vec<String> = sentinels.iter().map(|s| node_address(s)).collect();
                let mut client =
                    SentinelClient::build(addresses, master.clone(), Some(node), SentinelServerType::Master)?;
                let (address, conn) = connect_master(&mut client, timeout).await?;
                let sentinel = Arc::new(Sentinel {
                    client: tokio::sync::Mutex::new(client),
                    timeout,
                    current: RwLock::new(Some((address, 0, conn))),
                    generation: std::sync::atomic::AtomicU64::new(0),
                    looking: AtomicBool::new(false),
                    wait_replicas: *wait_replicas,
                    db,
                });
                tokio::spawn(recheck(Arc::downgrade(&sentinel)));
                Ok(RedisConn(Inner::Sentinel(sentinel, None)))
            }
            RedisTarget::Cluster { nodes } => {
                let client = ClusterClient::builder(nodes.iter().map(|n| node_address(n)))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()?;
                Ok(RedisConn(Inner::Cluster(within(timeout * 2, client.get_async_connection()).await?)))
            }
        }
    }

    /// Whether this is a cluster connection (where a pipeline must stay within one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }

    /// After a write that must survive a failover: waits until `REDIS_WAIT_REPLICAS` of the
    /// master's connected replicas (or all of them, when fewer are connected) hold it, and fails
    /// if they do not within the timeout (Sentinel). With no replica connected there is nothing
    /// a failover could promote, so nothing to wait for. A no-op for a single server and for a
    /// cluster.
    pub async fn durable(&mut self) -> RedisResult<()> {
        let Inner::Sentinel(s, _) = &self.0 else { return Ok(()) };
        let (configured, timeout) = (s.wait_replicas, s.timeout);
        if configured == 0 {
            return Ok(());
        }
        let connected = connected_replicas(&redis::cmd("ROLE").query_async::<Value>(&mut *self).await?);
        let wanted = configured.min(connected);
        if wanted < configured {
            tracing::warn!(connected, configured, "redis: fewer replicas connected than REDIS_WAIT_REPLICAS");
        }
        if wanted == 0 {
            return Ok(());
        }
        let acked: i64 = redis::cmd("WAIT")
            .arg(wanted)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
            .query_async(self)
            .await?;
        if acked < i64::from(wanted) {
            return Err(RedisError::from((
                ErrorKind::Io,
                "write not replicated",
                format!("{acked} of {wanted} replicas acknowledged"),
            )));
        }
        Ok(())
    }

    /// The address of the Sentinel master in use (tests and logs), if Sentinel is in use.
    pub fn master_address(&self) -> Option<String> {
        match &self.0 {
            Inner::Sentinel(s, _) => s.current.read().ok().and_then(|c| c.as_ref().map(|c| c.0.clone())),
            _ => None,
        }
    }
}

/// The replicas a master's `ROLE` answer lists (`["master", offset, [[ip, port, offset], ..]]`).
fn connected_replicas(role: &Value) -> u32 {
    match role {
        Value::Array(parts) => match parts.get(2) {
            Some(Value::Array(replicas)) => u32::try_from(replicas.len()).unwrap_or(u32::MAX),
            _ => 0,
        },
        _ => 0,
    }
}

/// Asks the sentinels for the master (checked with `ROLE`) and connects to it.
async fn connect_master(
    client: &mut SentinelClient,
    timeout: Duration,
) -> RedisResult<(String, MultiplexedConnection)> {
    let master = within(timeout, client.async_get_client()).await?;
    let address = master.get_connection_info().addr().to_string();
    let config = AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
    let conn = within(timeout * 2, master.get_multiplexed_async_connection_with_config(&config)).await?;
    Ok((address, conn))
}

impl Sentinel {
    /// The connection to the master, or an error (and a look-up started) if there is none.
    fn connection(self: &Arc<Self>) -> RedisResult<Pinned> {
        let current = match self.current.read() {
            Ok(c) => c.as_ref().map(|c| (c.1, c.2.clone())),
            Err(poisoned) => poisoned.into_inner().as_ref().map(|c| (c.1, c.2.clone())),
        };
        current.ok_or_else(|| {
            self.look_up_soon();
            RedisError::from((ErrorKind::Io, "no Redis master connection (looking the master up)"))
        })
    }

    fn look_up_soon(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.look_up().await });
    }

    /// Asks the sentinels for the master (one look-up at a time); connects to it when it moved
    /// or when there is no connection.
    async fn look_up(self: &Arc<Self>) {
        if self.looking.swap(true, Ordering::AcqRel) {
            return;
        }
        let found = {
            let mut client = self.client.lock().await;
            within(self.timeout, client.async_get_client()).await
        };
        if let Ok(master) = found {
            let address = master.get_connection_info().addr().to_string();
            let known = self.current.read().map(|c| c.as_ref().is_some_and(|c| c.0 == address)).unwrap_or(false);
            if !known {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                match within(self.timeout * 2, master.get_multiplexed_async_connection_with_config(&config)).await {
                    Ok(conn) => {
                        tracing::warn!(master = %address, "redis: connected to the master the sentinels name");
                        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                        if let Ok(mut current) = self.current.write() {
                            *current = Some((address, generation, conn));
                        }
                    }
                    Err(e) => tracing::warn!(master = %address, error = %e, "redis: master unreachable"),
                }
            }
        }
        self.looking.store(false, Ordering::Release);
    }

    /// The answer of a command on connection `generation`, having given the connection up if
    /// it failed as a failover makes it fail.
    fn watch<T>(self: &Arc<Self>, answer: RedisResult<T>, generation: u64) -> RedisResult<T> {
        if let Err(e) = &answer {
            self.after(e, generation);
        }
        answer
    }

    /// After a failed command on `used`: a connection that failed as a failover makes it fail
    /// (refused, dropped, timed out, or `READONLY` from a master turned replica) is given up,
    /// and the sentinels are asked again.
    fn after(self: &Arc<Self>, e: &RedisError, used: u64) {
        let failover = e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown));
        if !failover {
            return;
        }
        if let Ok(mut current) = self.current.write()
            && current.as_ref().is_some_and(|c| c.1 == used)
        {
            *current = None;
        }
        self.look_up_soon();
    }
}

/// Looks the master up every [`SENTINEL_RECHECK`] for as long as the connection is in use.
async fn recheck(sentinel: Weak<Sentinel>) {
    loop {
        tokio::time::sleep(SENTINEL_RECHECK).await;
        let Some(s) = sentinel.upgrade() else { return };
        s.look_up().await;
    }
}

/// The master connection a clone keeps to: the one it used first, else the current one.
fn pin(s: &Arc<Sentinel>, pinned: &mut Option<Pinned>) -> RedisResult<Pinned> {
    match pinned {
        Some(p) => Ok(p.clone()),
        None => s.connection().inspect(|p| *pinned = Some(p.clone())),
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
            Inner::Sentinel(s, pinned) => {
                let (s, conn) = (s.clone(), pin(s, pinned));
                Box::pin(async move {
                    let (generation, mut conn) = conn?;
                    s.watch(conn.req_packed_command(cmd).await, generation)
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(s, pinned) => {
                let (s, conn) = (s.clone(), pin(s, pinned));
                Box::pin(async move {
                    let (generation, mut conn) = conn?;
                    s.watch(conn.req_packed_commands(pipeline, offset, count).await, generation)
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
            Inner::Sentinel(s, _) => s.db,
        }
    }
}
