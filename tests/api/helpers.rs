//! Test harness: each test gets its own service instance on a random port, over a fresh
//! PostgreSQL database (copied from a template migrated once per run) and a unique Redis key
//! prefix, so tests run in parallel and runs never collide.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auth_actors::keys::{self, KeyAlg};
use auth_service::app::App;
use auth_service::config::Layers;
use auth_service::startup::{self, Exit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, Response};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::types::{FromSqlOwned, ToSql};

pub const ADMIN_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL").unwrap_or_else(|_| ADMIN_URL_DEFAULT.to_string())
}

/// Identifies this test run in database names so `make test` can drop them afterwards.
pub fn run_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| std::env::var("TEST_RUN_ID").unwrap_or_else(|_| format!("{}", std::process::id()))).clone()
}

pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
    format!("{base}/{name}")
}

/// A connection to the test database `name`.
pub async fn connect(name: &str) -> tokio_postgres::Client {
    auth_actors::db::connect(&database_url(name), Duration::from_secs(5)).await.expect("connect")
}

async fn admin_client() -> tokio_postgres::Client {
    auth_actors::db::connect(&admin_url(), Duration::from_secs(5))
        .await
        .expect("connect to the PostgreSQL admin database")
}

/// The migrated and seeded template, made once per test binary.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("auth_test_{}_template", run_id());
            let admin = admin_client().await;
            admin
                .execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"), &[])
                .await
                .expect("drop template");
            admin.execute(&format!("CREATE DATABASE \"{name}\""), &[]).await.expect("create template");
            let mut client = connect(&name).await;
            auth_actors::db::migrate(&mut client).await.expect("migrate template");
            auth_actors::db::seed_roles(&client).await.expect("seed roles");
            drop(client);
            name
        })
        .await
}

/// A fresh, migrated and seeded database; returns its name.
pub async fn fresh_database() -> String {
    let template = template().await;
    let name = format!("auth_test_{}_{}", run_id(), uuid::Uuid::new_v4().simple());
    let admin = admin_client().await;
    let mut attempt = 0;
    loop {
        match admin.execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""), &[]).await {
            Ok(_) => return name,
            // Two copies of one template at the same instant can collide; try again shortly.
            Err(e) if attempt < 20 => {
                attempt += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
}

/// An empty database with no schema at all.
pub async fn empty_database() -> String {
    let name = format!("auth_test_{}_{}", run_id(), uuid::Uuid::new_v4().simple());
    admin_client().await.execute(&format!("CREATE DATABASE \"{name}\""), &[]).await.expect("create database");
    name
}

pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("auth-test-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The one key file of a directory made by `key_dir`.
pub fn pem_of(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .expect("pem")
}

/// A key directory with one active key of `alg`.
pub fn key_dir(alg: KeyAlg) -> PathBuf {
    let dir = temp_dir("keys");
    keys::generate_key(&dir, alg, 2048).expect("generate key");
    dir
}

/// The settings of a test instance: cheap argon2, fresh database, unique Redis prefix.
pub fn test_layers(database: &str, keys_dir: &Path) -> Layers {
    let mut layers = Layers::defaults();
    layers
        .set("DATABASE_URL", database_url(database))
        .set("REDIS_URL", REDIS_URL)
        .set("REDIS_KEY_PREFIX", format!("test:{}:", uuid::Uuid::new_v4().simple()))
        .set("JWT_KEYS_DIR", keys_dir.display().to_string())
        .set("JWT_ISSUER", "http://auth.test")
        .set("JWT_AUDIENCE", "test-audience")
        .set("ARGON2_MEMORY_KIB", "256")
        .set("ARGON2_ITERATIONS", "1")
        .set("DATABASE_POOL_SIZE", "4")
        .set("USER_STORE_WORKERS", "4")
        .set("RESTART_BACKOFF_INITIAL", "20ms")
        .set("RESTART_BACKOFF_MAX", "200ms")
        .set("SHUTDOWN_GRACE", "2s")
        .set("COOKIE_SECURE", "false")
        // A fixed test key sealing TOTP secrets (32 bytes, base64url).
        .set("MFA_ENCRYPTION_KEYS", "test1:dGVzdC1vbmx5LW1mYS1rZXktMzItYnl0ZXMtbG9uZyE");
    layers
}

/// One running service instance.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub app: App,
    pub database: String,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<Exit>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    /// Requests shutdown, as SIGTERM does, without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Requests shutdown and waits for the instance to stop.
    pub async fn stop(mut self) -> Exit {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().expect("running").await.expect("join")
    }

    /// Value of a Prometheus sample line `name{labels}`, 0 if absent.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.expect("metrics body");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse::<f64>().ok()))
            .unwrap_or(0.0)
    }

    /// Polls `check` every 20 ms for up to 10 s.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..500 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for: {what}");
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// An instance with one setting changed from the test defaults.
pub async fn spawn_app_setting(name: &str, value: &str) -> TestApp {
    spawn_app_settings(&[(name, value)]).await
}

/// An instance with each of `settings` (name, value) changed from the test defaults.
pub async fn spawn_app_settings(settings: &[(&str, &str)]) -> TestApp {
    spawn_app_with(|l| {
        for (name, value) in settings {
            l.set(name, *value);
        }
    })
    .await
}

/// Starts an instance on its own database and key directory, after `customise` has adjusted
/// the settings.
pub async fn spawn_app_with(customise: impl FnOnce(&mut Layers)) -> TestApp {
    let database = fresh_database().await;
    let keys_dir = shared_keys().await;
    let mut layers = test_layers(&database, &keys_dir);
    customise(&mut layers);
    spawn_with_layers(layers).await
}

/// A read-only RS256 key directory shared by the tests that do not change keys.
pub async fn shared_keys() -> PathBuf {
    static KEYS: OnceCell<PathBuf> = OnceCell::const_new();
    KEYS.get_or_init(|| async { key_dir(KeyAlg::RS256) }).await.clone()
}

pub async fn spawn_with_layers(layers: Layers) -> TestApp {
    let config = layers.build().expect("valid test configuration");
    let database = layers.value("DATABASE_URL").and_then(|u| u.rsplit('/').next()).unwrap_or_default().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (app_tx, app_rx) = oneshot::channel::<App>();
    let handle = tokio::spawn(async move {
        let shutdown = async {
            let _ = shutdown_rx.await;
        };
        startup::run(config, listener, None, shutdown, move |app| {
            let _ = app_tx.send(app.clone());
        })
        .await
        .expect("service starts")
    });
    let app = app_rx.await.expect("service started");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    TestApp { addr, client, app, database, shutdown: Some(shutdown_tx), handle: Some(handle) }
}

/// A TCP proxy in front of a real dependency that a test can cut, to make that dependency
/// unreachable without touching the server every other test uses.
pub struct CuttableProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl CuttableProxy {
    pub async fn start(target: &'static str) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (cut2, conns2) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if cut2.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown().await;
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut list) = conns2.lock() {
                    list.push(task);
                }
            }
        });
        CuttableProxy { port, cut, conns }
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut list) = self.conns.lock() {
            for task in list.drain(..) {
                task.abort();
            }
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// An instance whose Redis connection runs through a proxy the test can cut.
pub async fn spawn_app_behind_redis_proxy() -> (CuttableProxy, TestApp) {
    let proxy = CuttableProxy::start("127.0.0.1:6379").await;
    let port = proxy.port;
    let app = spawn_app_with(|l| {
        l.set("REDIS_URL", format!("redis://127.0.0.1:{port}/0"));
    })
    .await;
    (proxy, app)
}

/// Starts another instance over an existing database (same keys), e.g. with other settings.
pub async fn spawn_app_on(database: &str, customise: impl FnOnce(&mut Layers)) -> TestApp {
    let keys_dir = shared_keys().await;
    let mut layers = test_layers(database, &keys_dir);
    customise(&mut layers);
    spawn_with_layers(layers).await
}

/// A signed-up user and its password.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password: String,
}

/// An access token and the refresh token from the cookie that came with it.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The value of the `refresh_token` cookie a response sets, if any.
pub fn refresh_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        let first = c.split(';').next()?;
        first.strip_prefix("refresh_token=").map(str::to_string)
    })
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }

    pub async fn signup(&self, username: &str, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/users/signup",
            &serde_json::json!({"username": username, "email": email, "password": password}),
        )
        .await
    }

    /// Signs up a fresh user and returns it.
    pub async fn new_user(&self) -> TestUser {
        let username = unique_name("user");
        let email = format!("{username}@example.com");
        let password = "correct horse battery".to_string();
        let resp = self.signup(&username, &email, &password).await;
        assert_eq!(resp.status(), 201, "signup");
        let body: serde_json::Value = resp.json().await.expect("json");
        TestUser { id: body["user_id"].as_str().expect("id").to_string(), username, email, password }
    }

    pub async fn login_json(&self, login: &str, password: &str) -> reqwest::Response {
        self.post_json("/api/v1/auth/login-json", &serde_json::json!({"username": login, "password": password})).await
    }

    /// A new user, logged in.
    pub async fn user_session(&self) -> (TestUser, Session) {
        let user = self.new_user().await;
        let session = self.login(&user).await;
        (user, session)
    }

    /// A GET's status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.get(path).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json"))
    }

    /// Logs `user` in and returns its session.
    pub async fn login(&self, user: &TestUser) -> Session {
        let resp = self.login_json(&user.username, &user.password).await;
        assert_eq!(resp.status(), 200, "login");
        let refresh = refresh_cookie(&resp).expect("refresh cookie");
        let body: serde_json::Value = resp.json().await.expect("json");
        Session { access: body["access_token"].as_str().expect("token").to_string(), refresh }
    }

    /// POSTs to the refresh endpoint with `token` as the cookie.
    pub async fn refresh(&self, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/refresh"))
            .header("cookie", format!("refresh_token={token}"))
            .send()
            .await
            .expect("request")
    }

    /// Refreshes with `token`, which must succeed; returns the successor from the cookie.
    pub async fn rotate(&self, token: &str) -> String {
        let resp = self.refresh(token).await;
        assert_eq!(resp.status(), 200, "refresh");
        refresh_cookie(&resp).expect("successor cookie")
    }

    pub async fn get_with(&self, path: &str, access: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(access).send().await.expect("request")
    }

    /// A direct connection to this instance's database, for checks the API does not expose.
    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.database).await
    }
}

/// Starts an instance whose key directory is `keys_dir` (for tests that change keys).
pub async fn spawn_app_with_keys(keys_dir: &Path, customise: impl FnOnce(&mut Layers)) -> TestApp {
    let database = fresh_database().await;
    let mut layers = test_layers(&database, keys_dir);
    customise(&mut layers);
    spawn_with_layers(layers).await
}

/// The real binary's `serve` on `127.0.0.1:port` against `database` and the shared test keys,
/// with only the test settings in its environment (a Redis prefix under `label`), JSON logs at
/// debug, stdout and stderr piped, killed when dropped: the caller adds its own settings and
/// spawns it.
pub async fn serve_command(label: &str, database: &str, port: u16) -> tokio::process::Command {
    let keys = shared_keys().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"));
    cmd.arg("serve")
        .env_clear()
        .env("CONFIG_DIR", temp_dir("config"))
        .env("DATABASE_URL", database_url(database))
        .env("REDIS_URL", REDIS_URL)
        .env("REDIS_KEY_PREFIX", format!("{label}:{}:", uuid::Uuid::new_v4().simple()))
        .env("JWT_KEYS_DIR", keys.display().to_string())
        .env("JWT_ISSUER", "http://auth.test")
        .env("JWT_AUDIENCE", "test-audience")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("COOKIE_SECURE", "false")
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary with `args` and `env` only (plus an empty config directory).
pub async fn run_cli(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"));
    cmd.args(args).env_clear().env("CONFIG_DIR", temp_dir("config"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run the binary")
}

impl TestApp {
    /// An admin's session (the user is granted `admin` directly in the database).
    pub async fn admin_session(&self) -> Session {
        let user = self.new_user().await;
        self.admin_session_for(&user).await
    }

    /// Grants `user` the admin role directly in the database and logs it in.
    pub async fn admin_session_for(&self, user: &TestUser) -> Session {
        self.grant_role(user, "admin").await;
        self.login(user).await
    }

    /// A new user granted `admin` directly in the database, and its session.
    pub async fn admin_user(&self) -> (TestUser, Session) {
        let user = self.new_user().await;
        let session = self.admin_session_for(&user).await;
        (user, session)
    }

    /// Grants `user` the role named `role` directly in the database.
    pub async fn grant_role(&self, user: &TestUser, role: &str) {
        self.db()
            .await
            .execute(
                "INSERT INTO user_roles (user_id, role_id) SELECT u.id, r.id FROM users u, roles r WHERE u.username = $1 AND r.name = $2",
                &[&user.username, &role],
            )
            .await
            .expect("grant role");
    }

    /// Posts an introspection of `token` as `caller`.
    pub async fn introspect_response(&self, caller: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/introspect"))
            .bearer_auth(caller)
            .form(&[("token", token)])
            .send()
            .await
            .expect("send")
    }

    /// Introspects `token` as `caller` and returns the JSON answer.
    pub async fn introspect(&self, caller: &str, token: &str) -> serde_json::Value {
        let resp = self.introspect_response(caller, token).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }
}

impl TestApp {
    /// `method path` with `token` as the bearer credential and `body` as JSON, each if given.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("send")
    }

    /// Makes `actor` fail through the hook of test builds.
    pub async fn fail_actor(&self, actor: &str) -> Response {
        self.client.post(self.url(&format!("/api/v1/_test/fail/{actor}"))).send().await.expect("send")
    }

    /// A POST without a body, with `access` as the bearer credential.
    pub async fn post_with(&self, path: &str, access: &str) -> Response {
        self.call(Method::POST, path, Some(access), None).await
    }

    pub async fn delete_with(&self, path: &str, access: &str) -> Response {
        self.call(Method::DELETE, path, Some(access), None).await
    }

    /// A POST of `body` as it is, declared as `content_type`.
    pub async fn post_body(&self, path: &str, content_type: &str, body: &'static str) -> Response {
        self.client.post(self.url(path)).header("content-type", content_type).body(body).send().await.expect("send")
    }

    /// Changes the caller's own profile (username, password) with `body`.
    pub async fn update_profile(&self, access: &str, body: Value) -> Response {
        self.call(Method::PATCH, "/api/v1/users/auth/update", Some(access), Some(&body)).await
    }

    /// Logs `session` out, presenting both its tokens as a browser would.
    pub async fn logout(&self, session: &Session) -> Response {
        self.client
            .post(self.url("/api/v1/auth/logout"))
            .header("cookie", format!("refresh_token={}", session.refresh))
            .bearer_auth(&session.access)
            .send()
            .await
            .expect("send")
    }

    /// A JSON login sent through a proxy that names `forwarded` in `X-Forwarded-For`.
    pub async fn login_json_from(&self, forwarded: &str, login: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/login-json"))
            .header("x-forwarded-for", forwarded)
            .json(&serde_json::json!({"username": login, "password": password}))
            .send()
            .await
            .expect("send")
    }

    /// The address the latest login of `user` was recorded from.
    pub async fn last_login_ip(&self, user: &TestUser) -> String {
        let id: uuid::Uuid = user.id.parse().expect("uuid");
        self.db_value(
            "SELECT ip_address FROM login_history WHERE user_id = $1 ORDER BY login_time DESC LIMIT 1",
            &[&id],
        )
        .await
    }

    /// The first column of the one row `sql` returns, for checks the API does not expose.
    pub async fn db_value<T: FromSqlOwned>(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> T {
        self.db().await.query_one(sql, params).await.expect("row").get(0)
    }

    /// How many security events of `event_type` were recorded.
    pub async fn security_events(&self, event_type: &str) -> i64 {
        self.db_value("SELECT count(*) FROM security_events WHERE event_type = $1", &[&event_type]).await
    }
}

/// Asserts that `resp` is a JSON error with `status` and the code `error`; returns its body.
pub async fn assert_error(resp: Response, status: u16, error: &str) -> Value {
    assert_eq!(resp.status(), status, "expected {status} {error}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], error, "{body}");
    body
}

/// The claims of a JWT, read without verifying it.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

/// A connection to the Redis every test instance uses, for checks the API does not expose.
pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL).expect("url").get_multiplexed_async_connection().await.expect("redis")
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The environment `create-superuser` needs against `database`, for the account given.
pub fn superuser_env(database: &str, username: &str, email: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url(database)),
        ("REDIS_URL", REDIS_URL.to_string()),
        ("JWT_KEYS_DIR", "/unused".to_string()),
        ("JWT_ISSUER", "http://auth.test".to_string()),
        ("JWT_AUDIENCE", "test-audience".to_string()),
        ("ARGON2_MEMORY_KIB", "256".to_string()),
        ("ARGON2_ITERATIONS", "1".to_string()),
        ("SUPERUSER_USERNAME", username.to_string()),
        ("SUPERUSER_EMAIL", email.to_string()),
        ("SUPERUSER_PASSWORD", password.to_string()),
    ]
}

/// Waits (up to 10 s) until the service at `base` answers its readiness probe with 200, and
/// returns a client for it.
pub async fn wait_until_ready(base: &str) -> reqwest::Client {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/api/v1/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service at {base} did not become ready");
}
