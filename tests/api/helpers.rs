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
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

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
            let mut client =
                auth_actors::db::connect(&database_url(&name), Duration::from_secs(5)).await.expect("connect");
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
        .set("COOKIE_SECURE", "false");
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

/// Starts an instance on its own database and key directory, after `customise` has adjusted
/// the settings.
/// An instance with one setting changed from the test defaults.
pub async fn spawn_app_setting(name: &str, value: &str) -> TestApp {
    spawn_app_with(|l| {
        l.set(name, value);
    })
    .await
}

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

    pub async fn get_with(&self, path: &str, access: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(access).send().await.expect("request")
    }

    /// A direct connection to this instance's database, for checks the API does not expose.
    pub async fn db(&self) -> tokio_postgres::Client {
        auth_actors::db::connect(&database_url(&self.database), Duration::from_secs(5)).await.expect("connect")
    }
}

/// Starts an instance whose key directory is `keys_dir` (for tests that change keys).
pub async fn spawn_app_with_keys(keys_dir: &Path, customise: impl FnOnce(&mut Layers)) -> TestApp {
    let database = fresh_database().await;
    let mut layers = test_layers(&database, keys_dir);
    customise(&mut layers);
    spawn_with_layers(layers).await
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
        self.db()
            .await
            .execute(
                "INSERT INTO user_roles (user_id, role_id) SELECT u.id, r.id FROM users u, roles r WHERE u.username = $1 AND r.name = 'admin'",
                &[&user.username],
            )
            .await
            .expect("grant admin");
        self.login(user).await
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
