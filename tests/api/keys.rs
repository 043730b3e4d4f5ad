//! Key lifecycle through the operator commands, while the service is serving.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_actors::keys::{KeyAlg, read_metadata};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use tokio::sync::Mutex;

use crate::helpers::{TestApp, database_url, key_dir, run_cli, spawn_app_with_keys};

const TTL_SECS: u64 = 2;

fn lifecycle_env(dir: &Path, app: &TestApp) -> Vec<(&'static str, String)> {
    vec![
        ("JWT_KEYS_DIR", dir.display().to_string()),
        ("JWKS_MAX_AGE", "1s".into()),
        ("KEYS_POLL_INTERVAL", "100ms".into()),
        ("ACCESS_TOKEN_TTL", format!("{TTL_SECS}s")),
        ("CLOCK_SKEW", "0s".into()),
        ("DATABASE_URL", database_url(&app.database)),
    ]
}

async fn spawn(dir: &Path) -> TestApp {
    spawn_app_with_keys(dir, |l| {
        l.set("JWKS_MAX_AGE", "1s")
            .set("KEYS_POLL_INTERVAL", "100ms")
            .set("ACCESS_TOKEN_TTL", format!("{TTL_SECS}s"))
            .set("CLOCK_SKEW", "0s")
            .set("RATE_LIMIT_ENABLED", "false");
    })
    .await
}

/// A key directory with one key of `alg`, that key's kid, an instance over the directory, and
/// the environment the key commands need to act on it.
async fn lifecycle(alg: KeyAlg) -> (PathBuf, String, TestApp, Vec<(&'static str, String)>) {
    let dir = key_dir(alg);
    let first = read_metadata(&dir).expect("meta").keys[0].kid.clone();
    let app = spawn(&dir).await;
    let env = lifecycle_env(&dir, &app);
    (dir, first, app, env)
}

async fn cli(args: &[&str], env: &[(&'static str, String)]) -> (bool, String) {
    let out = run_cli(args, env).await;
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Verifies `token` with the jsonwebtoken crate against `jwks` alone.
fn verify_with(jwks: &JwkSet, token: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or_else(|| format!("kid {kid} not in the served JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&["test-audience"]);
    v.set_issuer(&["http://auth.test"]);
    v.leeway = 0;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map(|_| ()).map_err(|e| e.to_string())
}

struct Traffic {
    failures: Vec<String>,
    kids: HashSet<String>,
    algs: HashSet<String>,
    requests: usize,
}

/// Logs in, fetches the JWKS, verifies every recent token against the JWKS being served and
/// uses it on a protected route, over and over until told to stop.
async fn traffic(app: Arc<TestApp>, stop: Arc<AtomicBool>, report: Arc<Mutex<Traffic>>) {
    let user = app.new_user().await;
    let mut recent: Vec<(Instant, String)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let session = app.login(&user).await;
        recent.push((Instant::now(), session.access.clone()));
        recent.retain(|(at, _)| at.elapsed() < Duration::from_millis(TTL_SECS * 1000 - 300));
        let jwks: JwkSet = app.get("/.well-known/jwks.json").await.json().await.expect("jwks");
        let mut r = report.lock().await;
        for (_, token) in &recent {
            r.requests += 1;
            if let Err(e) = verify_with(&jwks, token) {
                r.failures.push(format!("independent verification: {e}"));
            }
            let status = app.get_with("/api/v1/sessions", token).await.status();
            if status != 200 {
                r.failures.push(format!("protected route answered {status}"));
            }
        }
        let header = jsonwebtoken::decode_header(&session.access).expect("header");
        r.kids.insert(header.kid.unwrap_or_default());
        r.algs.insert(format!("{:?}", header.alg));
        drop(r);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn kids_in(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str().map(str::to_string)).collect()
}

#[tokio::test]
async fn a_full_rotation_under_traffic_never_fails_a_request_or_an_independent_verification() {
    let (dir, first, app, env) = lifecycle(KeyAlg::RS256).await;
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let report =
        Arc::new(Mutex::new(Traffic { failures: vec![], kids: HashSet::new(), algs: HashSet::new(), requests: 0 }));
    let load = tokio::spawn(traffic(app.clone(), stop.clone(), report.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // generate → next: published at once, not signing.
    let (ok, out) = cli(&["keys", "generate", "--alg", "ES256"], &env).await;
    assert!(ok, "{out}");
    let second = read_metadata(&dir).expect("meta").keys[1].kid.clone();
    app.eventually("next key published", || async {
        kids_in(&app.get("/.well-known/jwks.json").await.json().await.expect("jwks")).contains(&second)
    })
    .await;

    // Activation before the JWKS max-age has passed is refused, with the reason.
    let (ok, out) = cli(&["keys", "rotate"], &env).await;
    assert!(!ok, "{out}");
    assert!(out.contains("cannot be activated before it has been published"), "{out}");

    // next → active, active → retired.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (ok, out) = cli(&["keys", "rotate"], &env).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("activated {second}")) && out.contains(&format!("retired {first}")), "{out}");
    app.eventually("tokens signed by the new key", || async {
        let r = report.lock().await;
        r.kids.contains(&second)
    })
    .await;

    // A retired key cannot be removed while its tokens may live; afterwards it can.
    let (ok, out) = cli(&["keys", "remove", &first], &env).await;
    assert!(!ok && out.contains("may still have live tokens"), "{out}");
    tokio::time::sleep(Duration::from_millis(TTL_SECS * 1000 + 300)).await;
    let (ok, out) = cli(&["keys", "remove", &first], &env).await;
    assert!(ok, "{out}");
    app.eventually("removed key unpublished", || async {
        !kids_in(&app.get("/.well-known/jwks.json").await.json().await.expect("jwks")).contains(&first)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::SeqCst);
    load.await.expect("traffic");
    let r = report.lock().await;
    assert!(
        r.failures.is_empty(),
        "{} failures of {} checks: {:?}",
        r.failures.len(),
        r.requests,
        &r.failures[..r.failures.len().min(5)]
    );
    assert!(r.requests > 20, "traffic ran: {}", r.requests);
    assert_eq!(r.kids, HashSet::from([first.clone(), second.clone()]));
    assert_eq!(r.algs, HashSet::from(["RS256".to_string(), "ES256".to_string()]));
    let events: i64 = app
        .db_value(
            "SELECT count(*) FROM security_events WHERE event_type IN ('key_activated', 'key_retired', 'key_removed')",
            &[],
        )
        .await;
    assert_eq!(events, 3);
}

#[tokio::test]
async fn an_emergency_revoke_unpublishes_the_key_and_its_tokens_stop_verifying() {
    let (_, first, app, env) = lifecycle(KeyAlg::ES256).await;
    let (user, old) = app.user_session().await;
    assert_eq!(app.get_with("/api/v1/sessions", &old.access).await.status(), 200);

    let (ok, out) = cli(&["keys", "revoke", &first], &env).await;
    assert!(!ok && out.contains("no next key"), "revoking the only key is refused: {out}");
    let (ok, out) = cli(&["keys", "generate", "--alg", "RS256"], &env).await;
    assert!(ok, "{out}");
    let (ok, out) = cli(&["keys", "revoke", &first], &env).await;
    assert!(ok, "{out}");
    assert!(app.app.services.keys.reload().await.is_ok(), "what SIGHUP does");

    let jwks: serde_json::Value = app.get("/.well-known/jwks.json").await.json().await.expect("jwks");
    assert!(!kids_in(&jwks).contains(&first));
    assert_eq!(app.get_with("/api/v1/sessions", &old.access).await.status(), 401);
    let fresh = app.login(&user).await;
    assert_eq!(app.get_with("/api/v1/sessions", &fresh.access).await.status(), 200, "the replacement key signs");
    let fresh_admin = app.admin_session().await;
    assert_eq!(app.introspect(&fresh_admin.access, &old.access).await, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn a_retired_key_stays_while_a_clients_longer_lived_tokens_it_signed_may_live() {
    // Arrange: ACCESS_TOKEN_TTL is 2 s, but a client is registered for one-minute tokens.
    let (dir, first, app, env) = lifecycle(KeyAlg::RS256).await;
    let admin = app.admin_session().await;
    let meta = serde_json::json!({ "client_name": "long-lived", "access_token_ttl": 60 });
    crate::oauth::register(&app, &admin, meta).await;
    let (ok, out) = cli(&["keys", "generate", "--alg", "ES256"], &env).await;
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (ok, out) = cli(&["keys", "rotate"], &env).await;
    assert!(ok && out.contains(&format!("retired {first}")), "{out}");

    // Act: past ACCESS_TOKEN_TTL, remove the retired key.
    tokio::time::sleep(Duration::from_millis(TTL_SECS * 1000 + 300)).await;
    let (removed, out) = cli(&["keys", "remove", &first], &env).await;

    // Assert: refused, since the client's tokens it signed may live a minute.
    assert!(!removed && out.contains("may still have live tokens"), "{out}");
    assert!(
        read_metadata(&dir).expect("meta").keys.iter().any(|k| k.kid == first),
        "the retired key is still published"
    );
}
