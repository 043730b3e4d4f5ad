//! Regression tests for the account-takeover and revocation defects closed by the hardening
//! work: one test (or a small group) per defect, each through the real HTTP server or the real
//! binary. The races are run with real parallel requests, round after round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auth_actors::keys::{KeyAlg, read_metadata};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestUser, claims, key_dir, redis_connection, refresh_cookie, run_cli, spawn_app, spawn_app_on,
    spawn_app_setting, spawn_app_settings, spawn_app_with, spawn_app_with_keys, superuser_env,
};

fn no_limits(l: &mut auth_service::config::Layers) {
    l.set("RATE_LIMIT_ENABLED", "false");
}

async fn event_count(app: &TestApp, event_type: &str, user_id: &str) -> i64 {
    let id: uuid::Uuid = user_id.parse().expect("uuid");
    app.db_value("SELECT count(*) FROM security_events WHERE event_type = $1 AND user_id = $2", &[&event_type, &id])
        .await
}

async fn is_admin(app: &TestApp, username: &str) -> bool {
    app.db_value(
        "SELECT EXISTS (SELECT 1 FROM user_roles ur JOIN users u ON u.id = ur.user_id JOIN roles r ON r.id = ur.role_id
         WHERE lower(u.username) = lower($1) AND r.name = 'admin')",
        &[&username],
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// 1. create-superuser never promotes an existing account silently.

async fn create_superuser(
    app: &TestApp,
    username: &str,
    email: &str,
    password: &str,
    flags: &[&str],
) -> (bool, String) {
    let mut args = vec!["create-superuser"];
    args.extend_from_slice(flags);
    let out = run_cli(&args, &superuser_env(&app.database, username, email, password)).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.success(), stderr)
}

#[tokio::test]
async fn create_superuser_refuses_to_promote_an_account_someone_else_signed_up_first() {
    let app = spawn_app().await;
    let squatter = app.signup("root_admin", "squatter@example.com", "squatter password").await;
    assert_eq!(squatter.status(), 201);

    let (ok, err) = create_superuser(&app, "root_admin", "ops@example.com", "operator password", &[]).await;
    assert!(!ok, "an existing username is not promoted without --promote-existing");
    assert_eq!(err.trim().lines().count(), 1, "one line says why: {err}");
    assert!(err.contains("--promote-existing"), "{err}");
    let (ok, _) = create_superuser(&app, "someone_else", "squatter@example.com", "operator password", &[]).await;
    assert!(!ok, "an existing email is not promoted either");

    let promote = ["--promote-existing"];
    let (ok, err) = create_superuser(&app, "root_admin", "ops@example.com", "squatter password", &promote).await;
    assert!(!ok, "username and email must match the same row: {err}");
    let (ok, err) = create_superuser(&app, "root_admin", "squatter@example.com", "operator password", &promote).await;
    assert!(!ok, "the password must verify against the row: {err}");
    assert!(err.contains("password"), "{err}");
    assert!(!is_admin(&app, "root_admin").await, "the squatter never became admin");

    let (ok, err) = create_superuser(&app, "root_admin", "squatter@example.com", "squatter password", &promote).await;
    assert!(ok, "an explicit promotion with the account's own password works: {err}");
    assert!(is_admin(&app, "root_admin").await);
}

#[tokio::test]
async fn create_superuser_refuses_a_username_and_an_email_of_two_different_accounts() {
    let app = spawn_app().await;
    let a = app.new_user().await;
    let b = app.new_user().await;
    let (ok, err) = create_superuser(&app, &a.username, &b.email, &a.password, &["--promote-existing"]).await;
    assert!(!ok, "{err}");
    assert!(!is_admin(&app, &a.username).await && !is_admin(&app, &b.username).await);
}

// ---------------------------------------------------------------------------------------------
// 2. The old-password check of a profile update goes through the login gate.

#[tokio::test]
async fn wrong_old_passwords_lock_the_account_and_then_even_the_right_one_is_refused() {
    let app = spawn_app_settings(&[("LOCKOUT_THRESHOLD", "3"), ("LOCKOUT_BASE", "60s")]).await;
    let (user, session) = app.user_session().await;
    let change = |old: &str| json!({"old_password": old, "new_password": "a brand new password"});

    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(app.update_profile(&session.access, change(&format!("wrong guess {i}"))).await.status().as_u16());
    }
    assert_eq!(statuses, vec![403, 403, 403, 429, 429], "three checks, then locked");
    let resp = app.update_profile(&session.access, change(&user.password)).await;
    assert_eq!(resp.status(), 429, "locked: the right old password is refused too");
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(event_count(&app, "password_check_failed", &user.id).await, 3);
    assert_eq!(event_count(&app, "lockout", &user.id).await, 1);
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 429, "the login shares the lock");
}

// ---------------------------------------------------------------------------------------------
// 3. Introspection and authentication use the subject's current standing.

#[tokio::test]
async fn introspection_reports_current_roles_and_inactive_users_are_refused_everywhere() {
    let app = spawn_app_setting("AUTHZ_CACHE_TTL", "0s").await;
    let admin = app.admin_session().await;
    let user = app.new_user().await;
    let moderator = json!({"user_id": user.id, "role_name": "moderator"});
    let assign = app.call(Method::POST, "/api/v1/user_roles/assign", Some(&admin.access), Some(&moderator)).await;
    assert_eq!(assign.status(), 201);
    let session = app.login(&user).await;
    assert_eq!(app.introspect(&admin.access, &session.access).await["roles"], json!(["moderator", "user"]));

    let role_id: uuid::Uuid = app.db_value("SELECT id FROM roles WHERE name = 'moderator'", &[]).await;
    let removed = app.delete_with(&format!("/api/v1/user_roles/{}/roles/{role_id}", user.id), &admin.access).await;
    assert_eq!(removed.status(), 204);
    let answer = app.introspect(&admin.access, &session.access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["roles"], json!(["user"]), "the role taken away is not reported");

    let id: uuid::Uuid = user.id.parse().expect("uuid");
    app.db().await.execute("UPDATE users SET is_active = false WHERE id = $1", &[&id]).await.expect("deactivate");
    assert_eq!(app.introspect(&admin.access, &session.access).await, json!({"active": false}));
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 401, "authenticated-only routes too");
    assert_eq!(app.get_with("/api/v1/users/user/history", &session.access).await.status(), 401);
}

// ---------------------------------------------------------------------------------------------
// 4. No access token minted by a refresh overlapping a logout-all is honoured afterwards.

/// Refreshes `start` over and over (always with the newest successor) until a refresh fails or
/// `stop` is set; returns every access token it was given and every status it saw.
async fn refresh_loop(app: Arc<TestApp>, start: String, stop: Arc<AtomicBool>) -> (Vec<String>, Vec<u16>) {
    let (mut minted, mut statuses) = (Vec::new(), Vec::new());
    let mut token = start;
    while !stop.load(Ordering::SeqCst) {
        let resp = app.refresh(&token).await;
        let status = resp.status().as_u16();
        statuses.push(status);
        if status != 200 {
            break;
        }
        token = refresh_cookie(&resp).expect("successor cookie");
        let body: Value = resp.json().await.expect("json");
        minted.push(body["access_token"].as_str().expect("token").to_string());
    }
    (minted, statuses)
}

/// Runs three refresh loops of `user` while `act` runs after `delay`; returns the tokens minted
/// and the statuses seen by the loops.
async fn race_refreshes<F, Fut>(app: &Arc<TestApp>, user: &TestUser, delay: Duration, act: F) -> (Vec<String>, Vec<u16>)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..3 {
        let session = app.login(user).await;
        loops.push(tokio::spawn(refresh_loop(app.clone(), session.refresh, stop.clone())));
    }
    tokio::time::sleep(delay).await;
    act().await;
    stop.store(true, Ordering::SeqCst);
    let (mut minted, mut statuses) = (Vec::new(), Vec::new());
    for l in loops {
        let (m, s) = l.await.expect("loop");
        minted.extend(m);
        statuses.extend(s);
    }
    (minted, statuses)
}

#[tokio::test]
async fn no_access_token_minted_by_a_refresh_racing_logout_all_survives_it() {
    let app = Arc::new(spawn_app_with(no_limits).await);
    let user = app.new_user().await;
    for round in 0..25u64 {
        let killer = app.login(&user).await;
        let (minted, _) = race_refreshes(&app, &user, Duration::from_millis(5 + round % 7), || async {
            assert_eq!(app.post_with("/api/v1/auth/logout-all", &killer.access).await.status(), 200);
        })
        .await;
        for token in &minted {
            assert_eq!(
                app.get_with("/api/v1/sessions", token).await.status(),
                401,
                "round {round}: a token minted during the logout-all is still honoured"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Deleting a user while its sessions refresh succeeds, and the refreshes fail cleanly.

#[tokio::test]
async fn deleting_a_user_while_its_sessions_refresh_answers_204_and_the_refreshes_401() {
    let app = Arc::new(spawn_app_with(no_limits).await);
    let admin = app.admin_session().await;
    for round in 0..12u64 {
        let user = app.new_user().await;
        let (minted, statuses) = race_refreshes(&app, &user, Duration::from_millis(5 + round % 5), || async {
            let resp = app.delete_with(&format!("/api/v1/users/{}", user.id), &admin.access).await;
            assert_eq!(resp.status(), 204, "round {round}: {}", resp.text().await.unwrap_or_default());
        })
        .await;
        assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "round {round}: refreshes saw {statuses:?}");
        for token in &minted {
            assert_eq!(app.get_with("/api/v1/sessions", token).await.status(), 401, "round {round}");
        }
    }
}

#[tokio::test]
async fn a_deadlocked_delete_is_retried_and_answers_204_not_database_unavailable() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let user = app.new_user().await;
    app.login(&user).await;
    let id: uuid::Uuid = user.id.parse().expect("uuid");

    // Another transaction holds a key-share lock on the user row, as a rotation's insert does.
    let mut blocker = app.db().await;
    let tx = blocker.transaction().await.expect("begin");
    // Let the service's side of the deadlock be the one PostgreSQL aborts.
    tx.execute("SET LOCAL deadlock_timeout = '30s'", &[]).await.expect("set");
    tx.query_one("SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE", &[&id]).await.expect("lock user");

    let delete = {
        let (client, url, token) = (app.client.clone(), app.url(&format!("/api/v1/users/{id}")), admin.access.clone());
        tokio::spawn(async move { client.delete(url).bearer_auth(token).send().await.expect("send") })
    };
    let watcher = app.db().await;
    app.eventually("the delete waits for the user row", || async {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                 AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM users%'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        waiting == 1
    })
    .await;
    // Now wait for the tokens the delete holds: a deadlock, which PostgreSQL breaks by aborting
    // the delete's transaction.
    tx.query("SELECT 1 FROM refresh_tokens WHERE user_id = $1 FOR UPDATE", &[&id]).await.expect("lock tokens");
    tx.rollback().await.expect("rollback");

    let resp = delete.await.expect("join");
    assert_eq!(resp.status(), 204, "the aborted try is run again: {}", resp.text().await.unwrap_or_default());
    // PostgreSQL may abort a second try too: if the retry locks the tokens before the blocker,
    // woken by the first abort, has taken them, the two deadlock again. Each abort is counted.
    let contention = app.metric("auth_postgres_contention_total").await;
    assert!((1.0..4.0).contains(&contention), "retried, within the bound: {contention}");
    assert_eq!(app.metric("auth_postgres_errors_total").await, 0.0);
}

// ---------------------------------------------------------------------------------------------
// 6. X-Forwarded-For entries with a port are parsed, and an unparseable one stops the walk.

async fn login_from(app: &TestApp, user: &TestUser, forwarded: &str) -> String {
    let resp = app.login_json_from(forwarded, &user.username, &user.password).await;
    assert_eq!(resp.status(), 200);
    app.last_login_ip(user).await
}

#[tokio::test]
async fn forwarded_entries_with_ports_are_parsed_and_garbage_stops_the_walk() {
    let app =
        spawn_app_settings(&[("TRUST_PROXY_HEADERS", "true"), ("TRUSTED_PROXY_IPS", "127.0.0.1/32, 10.0.0.0/8")]).await;
    let user = app.new_user().await;
    assert_eq!(login_from(&app, &user, "198.51.100.7, 203.0.113.9:4711").await, "203.0.113.9");
    assert_eq!(login_from(&app, &user, "198.51.100.7, [2001:db8::5]:443").await, "2001:db8::5");
    assert_eq!(login_from(&app, &user, "198.51.100.7, 203.0.113.9:4711, 10.1.2.3:80").await, "203.0.113.9");
    assert_eq!(
        login_from(&app, &user, "203.0.113.50, not-an-address").await,
        "127.0.0.1",
        "an entry that cannot be parsed is never skipped: the nearest trusted hop is the client"
    );
    assert_eq!(login_from(&app, &user, "203.0.113.50, junk, 10.1.2.3").await, "10.1.2.3");
}

// ---------------------------------------------------------------------------------------------
// 7. A broken key file does not keep a revoked key alive.

#[tokio::test]
async fn a_revoked_key_stops_verifying_even_when_another_key_file_is_broken() {
    let dir = key_dir(KeyAlg::ES256);
    let first = read_metadata(&dir).expect("meta").keys[0].kid.clone();
    let app = spawn_app_with_keys(&dir, |l| {
        l.set("JWKS_MAX_AGE", "1s").set("KEYS_POLL_INTERVAL", "100ms").set("RATE_LIMIT_ENABLED", "false");
    })
    .await;
    let env = [("JWT_KEYS_DIR", dir.display().to_string()), ("JWKS_MAX_AGE", "1s".to_string())];
    let (user, old) = app.user_session().await;

    let broken = auth_actors::keys::generate_key(&dir, KeyAlg::RS256, 2048).expect("generate").kid;
    let good = auth_actors::keys::generate_key(&dir, KeyAlg::RS256, 2048).expect("generate").kid;
    let broken_path = dir.join(format!("{broken}.pem"));
    let pem = std::fs::read(&broken_path).expect("read");
    std::fs::write(&broken_path, b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        .expect("break");
    let out = run_cli(&["keys", "revoke", &first], &env).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    app.eventually("the revoked key stops verifying", || async {
        app.get_with("/api/v1/sessions", &old.access).await.status() == 401
    })
    .await;
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.expect("jwks");
    let kids: Vec<&str> = jwks["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str()).collect();
    assert!(!kids.contains(&first.as_str()) && kids.contains(&good.as_str()), "{kids:?}");
    let fresh = app.login(&user).await;
    let header = jsonwebtoken::decode_header(&fresh.access).expect("header");
    assert_eq!(header.kid.as_deref(), Some(good.as_str()), "the replacement signs");
    assert_eq!(app.get_with("/api/v1/sessions", &fresh.access).await.status(), 200);
    let ready: Value = app.get("/api/v1/readyz").await.json().await.expect("json");
    let keys = ready["details"]["keys"].as_str().unwrap_or_default().to_string();
    assert!(keys.starts_with("degraded"), "readiness reports the key directory: {ready}");
    assert!(keys.contains(&broken), "and names the broken key: {keys}");

    // A KeyManager that fails now restarts on the degraded directory instead of staying down.
    let fail = app.fail_actor("key_manager").await;
    assert_eq!(fail.status(), 202);
    app.eventually("the KeyManager restarts", || async {
        app.metric("auth_actor_restarts_total{actor=\"key_manager\"}").await == 1.0
    })
    .await;
    app.eventually("ready again", || async { app.get("/api/v1/readyz").await.status() == 200 }).await;
    assert_eq!(app.get_with("/api/v1/sessions", &old.access).await.status(), 401, "and the revoked key stays out");

    std::fs::write(&broken_path, pem).expect("repair");
    app.eventually("the next poll retries the broken key", || async {
        let ready: Value = app.get("/api/v1/readyz").await.json().await.expect("json");
        ready["details"]["keys"] == "ok"
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. A login racing a password change can neither undo it nor keep a session.

#[tokio::test]
async fn a_login_racing_a_password_change_neither_reverts_it_nor_keeps_its_session() {
    // Logins through `rehashing` re-hash every password `app` stored (other argon2 parameters).
    let app = Arc::new(spawn_app_with(no_limits).await);
    let rehashing = Arc::new(
        spawn_app_on(&app.database, |l| {
            no_limits(l);
            l.set("ARGON2_ITERATIONS", "2");
        })
        .await,
    );
    let mut user = app.new_user().await;
    for round in 0..40u64 {
        let owner = app.login(&user).await;
        let next = format!("password number {round}");
        let (login, change) = tokio::join!(
            async {
                tokio::time::sleep(Duration::from_micros(250 * (round % 8))).await;
                rehashing.login_json(&user.username, &user.password).await
            },
            app.update_profile(&owner.access, json!({"old_password": user.password, "new_password": next}))
        );
        assert_eq!(change.status(), 200, "round {round}");
        let raced_refresh = (login.status() == 200).then(|| refresh_cookie(&login).expect("cookie"));
        user.password = next;
        assert_eq!(
            app.login_json(&user.username, &user.password).await.status(),
            200,
            "round {round}: the password change was undone"
        );
        if let Some(token) = raced_refresh {
            assert_eq!(app.refresh(&token).await.status(), 401, "round {round}: a session survived the change");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Also closed.

#[tokio::test]
async fn a_token_without_a_session_id_is_refused() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": "http://auth.test", "sub": user.id, "aud": "test-audience", "exp": now + 300, "iat": now, "nbf": now,
        "jti": uuid::Uuid::now_v7().to_string(), "type": "access", "username": user.username, "email": user.email,
        "roles": ["user"],
    });
    let token = app.app.services.keys.sign("at+jwt", claims).await.expect("sign");
    assert_eq!(app.get_with("/api/v1/sessions", &token).await.status(), 401);
}

#[tokio::test]
async fn a_session_cannot_be_refreshed_past_its_absolute_lifetime() {
    let app = spawn_app_setting("SESSION_MAX_LIFETIME", "2s").await;
    let (_, session) = app.user_session().await;
    let successor = app.rotate(&session.refresh).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(app.refresh(&successor).await.status(), 401, "rotation does not extend the session forever");
}

#[tokio::test]
async fn grace_window_retries_are_counted_recorded_and_bounded() {
    let app = spawn_app_setting("REFRESH_GRACE_RETRIES", "2").await;
    let (user, session) = app.user_session().await;
    let successor = app.rotate(&session.refresh).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = app.refresh(&session.refresh).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 200 {
            assert_eq!(refresh_cookie(&resp).as_deref(), Some(successor.as_str()));
        }
    }
    assert_eq!(statuses, vec![200, 200, 401, 401], "two retries, then the replay counts as reuse");
    assert_eq!(app.refresh(&successor).await.status(), 401, "and the family is revoked");
    assert_eq!(event_count(&app, "refresh_retried", &user.id).await, 2);
    assert_eq!(app.metric("auth_refreshes_total{outcome=\"retried\"}").await, 2.0);
}

#[tokio::test]
async fn a_secure_refresh_cookie_uses_the_host_prefix_and_secure_is_the_default() {
    let defaults = auth_service::config::Layers::defaults();
    assert_eq!(defaults.value("COOKIE_SECURE"), Some("true"));
    let dev = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")).expect("dev config");
    assert!(dev.lines().any(|l| l.replace(' ', "") == "cookie_secure=false"), "the development config turns it off");

    let app = spawn_app_setting("COOKIE_SECURE", "true").await;
    let user = app.new_user().await;
    let resp = app.login_json(&user.username, &user.password).await;
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.starts_with("__Host-refresh_token="), "{cookie}");
    assert!(cookie.contains("; Secure") && cookie.contains("; Path=/;") && !cookie.contains("Domain"), "{cookie}");
    let token = cookie.split(';').next().and_then(|c| c.strip_prefix("__Host-refresh_token=")).expect("value");
    let with = |name: &str| {
        app.client.post(app.url("/api/v1/auth/refresh")).header("cookie", format!("{name}={token}")).send()
    };
    assert_eq!(with("refresh_token").await.expect("send").status(), 401, "only the prefixed cookie is read");
    assert_eq!(with("__Host-refresh_token").await.expect("send").status(), 200);
}

#[tokio::test]
async fn a_blacklist_entry_outlives_the_token_and_the_leeway() {
    let app = spawn_app_setting("CLOCK_SKEW", "2s").await;
    let (_, session) = app.user_session().await;
    let claims = claims(&session.access);
    let resp = app.post_with("/api/v1/auth/logout", &session.access).await;
    assert_eq!(resp.status(), 200);
    let user_id = claims["sub"].as_str().expect("sub").parse().expect("uuid");
    let key = app.app.config.redis_keys.blacklist(user_id, claims["jti"].as_str().expect("jti").parse().expect("uuid"));
    let mut redis = redis_connection().await;
    let before_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut redis).await.expect("pttl");
    // The verifier accepts the token while now (whole seconds) <= exp + leeway.
    let accepted_until_ms = (claims["exp"].as_i64().expect("exp") + 2 + 1) * 1000;
    assert!(before_ms + pttl >= accepted_until_ms, "entry ends {} ms too early", accepted_until_ms - before_ms - pttl);
}

#[tokio::test]
async fn per_actor_counters_are_exported_at_zero_from_the_start() {
    let app = spawn_app().await;
    let text = app.get("/metrics").await.text().await.expect("metrics");
    for actor in ["key_manager", "user_store", "rate_limiter", "mailer", "health"] {
        for family in ["auth_actor_restarts_total", "auth_actor_failures_total"] {
            let line = format!("{family}{{actor=\"{actor}\"}} 0");
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
    }
}

#[tokio::test]
async fn discovery_advertises_only_the_algorithms_the_jwks_holds() {
    let rs = spawn_app().await;
    let doc: Value = rs.get("/.well-known/openid-configuration").await.json().await.expect("json");
    assert_eq!(doc["access_token_signing_alg_values_supported"], json!(["RS256"]));
    let es = spawn_app_with_keys(&key_dir(KeyAlg::ES256), |_| {}).await;
    let doc: Value = es.get("/.well-known/oauth-authorization-server").await.json().await.expect("json");
    assert_eq!(doc["access_token_signing_alg_values_supported"], json!(["ES256"]));
}
