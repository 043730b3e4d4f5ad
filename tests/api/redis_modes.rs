//! Redis deployed as more than one server: a Sentinel master with a replica (and a failover),
//! and a Cluster. Each test starts its own `redis-server` processes on free loopback ports and
//! stops them when it ends; the machine's shared Redis is not touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Session, TestApp, free_port, spawn_app_settings};
use crate::oauth::{access_token, post_as_client, register, token_basic};

/// `redis-server` processes of one test, killed (and their directory removed) on drop.
struct Servers {
    dir: PathBuf,
    children: Vec<(u16, Child)>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Servers {
    fn new() -> Servers {
        let dir = std::env::temp_dir().join(format!("auth-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        Servers { dir, children: Vec::new() }
    }

    /// Starts `redis-server` with `config` (its lines) on a free port; returns the port.
    fn start(&mut self, config: &[String], sentinel: bool) -> u16 {
        let port = free_port();
        let path = self.dir.join(format!("{port}.conf"));
        let mut text = format!("port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n", self.dir.display());
        for line in config {
            text.push_str(line);
            text.push('\n');
        }
        if config.iter().any(|l| l.starts_with("cluster-enabled")) {
            text.push_str(&format!("cluster-config-file nodes-{port}.conf\n"));
        }
        std::fs::write(&path, text).expect("config");
        let mut cmd = Command::new("redis-server");
        cmd.arg(&path);
        if sentinel {
            cmd.arg("--sentinel");
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("redis-server is installed");
        self.children.push((port, child));
        port
    }

    fn kill(&mut self, port: u16) {
        if let Some((_, child)) = self.children.iter_mut().find(|(p, _)| *p == port) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn redis_info(port: u16, section: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn =
        tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await.ok()?.ok()?;
    redis::cmd(if section == "cluster" { "CLUSTER" } else { "INFO" })
        .arg(if section == "cluster" { "INFO" } else { section })
        .query_async::<String>(&mut conn)
        .await
        .ok()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A Bearer-only route: its status for the session's access token (503 bodies printed).
async fn me(app: &TestApp, session: &Session) -> u16 {
    let resp = app.get_with("/api/v1/sessions", &session.access).await;
    let status = resp.status().as_u16();
    if status >= 500 {
        println!("{status}: {}", resp.text().await.unwrap_or_default());
    }
    status
}

/// Logs the session out; its status.
async fn logout(app: &TestApp, session: &Session) -> u16 {
    app.logout(session).await.status().as_u16()
}

#[tokio::test]
async fn a_sentinel_failover_keeps_every_acknowledged_revocation_and_the_service_follows_the_new_master() {
    // Arrange: a master, its replica and one sentinel; an instance that finds the master
    // through the sentinel.
    let mut servers = Servers::new();
    let master = servers.start(&[], false);
    let replica = servers.start(&[format!("replicaof 127.0.0.1 {master}"), "enable-debug-command yes".into()], false);
    let sentinel = servers.start(
        &[
            format!("sentinel monitor auth 127.0.0.1 {master} 1"),
            "sentinel down-after-milliseconds auth 500".into(),
            "sentinel failover-timeout auth 5000".into(),
        ],
        true,
    );
    until("the replica in sync", async || {
        redis_info(replica, "replication").await.is_some_and(|i| i.contains("master_link_status:up"))
    })
    .await;
    until("the sentinel knows the replica", async || {
        redis_info(sentinel, "sentinel").await.is_some_and(|i| i.contains("slaves=1"))
    })
    .await;
    let sentinels = format!("127.0.0.1:{sentinel}");
    let app =
        spawn_app_settings(&[("REDIS_URL", ""), ("REDIS_SENTINELS", &sentinels), ("REDIS_SENTINEL_MASTER", "auth")])
            .await;
    assert_eq!(app.app.services.redis.master_address().as_deref(), Some(format!("127.0.0.1:{master}").as_str()));
    let user = app.new_user().await;
    let revoked = app.login(&user).await;
    let kept = app.login(&user).await;

    // Act: the replica stalls for a moment (its replication with it); a logout is answered;
    // at once the master dies, and the sentinel promotes the replica.
    let stall = tokio::spawn(async move {
        let client = redis::Client::open(format!("redis://127.0.0.1:{replica}")).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("replica");
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg("0.8").query_async(&mut conn).await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(logout(&app, &revoked).await, 200, "acknowledged only once the replica holds it");
    servers.kill(master);
    stall.await.expect("stall");

    // Assert: meanwhile Redis-bound requests fail closed with 503 (never another 5xx); then the
    // instance follows the new master, and the revocation acknowledged before the fault holds.
    let mut statuses = Vec::new();
    until("the instance on the new master", async || {
        let status = me(&app, &kept).await;
        statuses.push(status);
        status == 200 && app.app.services.redis.master_address() == Some(format!("127.0.0.1:{replica}"))
    })
    .await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "only 200 or 503 during the failover: {statuses:?}");
    assert_eq!(me(&app, &revoked).await, 401, "the logout acknowledged before the fault survived it");
    assert_eq!(app.get("/api/v1/readyz").await.status(), 200);
    assert_eq!(logout(&app, &kept).await, 200, "writes go to the new master");
    assert_eq!(me(&app, &kept).await, 401);
    drop(servers);
}

#[tokio::test]
async fn every_redis_decision_works_on_a_cluster_with_each_scripts_keys_in_one_slot() {
    // Arrange: three masters sharing the slots, and an instance that knows one of them.
    let mut servers = Servers::new();
    let cluster = ["cluster-enabled yes".to_string(), "cluster-node-timeout 2000".to_string()];
    let ports: Vec<u16> = (0..3).map(|_| servers.start(&cluster, false)).collect();
    for port in &ports {
        until("a node up", async || redis_info(*port, "server").await.is_some()).await;
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(created.success(), "cluster created");
    for port in &ports {
        until("the cluster state ok", async || {
            redis_info(*port, "cluster").await.is_some_and(|i| i.contains("cluster_state:ok"))
        })
        .await;
    }
    let app =
        spawn_app_settings(&[("REDIS_URL", ""), ("REDIS_CLUSTER_NODES", &nodes[0]), ("LOCKOUT_THRESHOLD", "2")]).await;

    // Act and assert: the rate limits, the login gate and lockout, the token checks (one MGET
    // per token), the blacklist, logout-all's markers and the authorization epoch.
    assert_eq!(app.get("/api/v1/readyz").await.status(), 200);
    let user = app.new_user().await;
    let first = app.login(&user).await;
    let second = app.login(&user).await;
    assert_eq!(me(&app, &first).await, 200);
    assert_eq!(logout(&app, &first).await, 200);
    assert_eq!(me(&app, &first).await, 401);
    assert_eq!(app.post_with("/api/v1/auth/logout-all", &second.access).await.status(), 200);
    assert_eq!(me(&app, &second).await, 401);
    let admin = app.admin_session().await;
    assert_eq!(
        app.get_with("/api/v1/admin/events", &admin.access).await.status(),
        200,
        "admin standing, under the epoch"
    );
    let victim = app.new_user().await;
    for _ in 0..2 {
        assert_eq!(app.login_json(&victim.username, "wrong password").await.status(), 401);
    }
    let locked = app.login_json(&victim.username, &victim.password).await;
    assert_eq!(locked.status(), 429, "locked out after the threshold, even with the right password");

    // An OAuth client's gate (its keys in one slot, the epoch in another), its token and a
    // resource server's introspection as a client.
    let metadata = serde_json::json!({ "client_name": "billing", "scope": "", "audience": "billing-api" });
    let client = register(&app, &admin, metadata).await;
    let resp = token_basic(&app, &client.id, &client.secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(resp.status(), 200, "client_credentials on a cluster");
    let token = access_token(resp).await;
    let resp = post_as_client(&app, "/oauth2/introspect", &client.id, &client.secret, &[("token", &token)]).await;
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["active"], true, "introspected as a client on a cluster");
    drop(servers);
}
