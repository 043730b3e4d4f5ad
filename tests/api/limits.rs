//! Rate limits and lockout under parallel requests, `X-Forwarded-For` from trusted and untrusted
//! peers, and login and refresh when Redis or PostgreSQL is unreachable.

use crate::helpers::{
    CuttableProxy, TestApp, assert_error, spawn_app_behind_redis_proxy, spawn_app_setting, spawn_app_settings,
    spawn_app_with,
};

#[tokio::test]
async fn thirty_parallel_wrong_passwords_cannot_exceed_the_lockout_threshold() {
    let app = spawn_app_settings(&[
        ("LOCKOUT_THRESHOLD", "5"),
        ("RATE_LIMIT_LOGIN", "1000/60s"),
        ("RATE_LIMIT_LOGIN_ACCOUNT", "1000/60s"),
    ])
    .await;
    let user = app.new_user().await;

    let attempts = (0..30).map(|_| app.login_json(&user.username, "wrong password!"));
    let responses = futures::future::join_all(attempts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked, 5, "{statuses:?}");
    assert_eq!(refused, 25, "{statuses:?}");
    assert!(responses.iter().filter(|r| r.status() == 429).all(|r| r.headers().contains_key("retry-after")));

    let failures: i64 = app
        .db_value(
            "SELECT count(*) FROM login_history h JOIN users u ON u.id = h.user_id WHERE u.username = $1 AND NOT h.successful",
            &[&user.username],
        )
        .await;
    assert_eq!(failures, 5, "only the reserved attempts reached the password check");
    assert_eq!(
        app.login_json(&user.username, &user.password).await.status(),
        429,
        "locked even for the right password"
    );
    assert_eq!(app.security_events("lockout").await, 1);
}

#[tokio::test]
async fn the_login_limit_per_ip_answers_429_with_ratelimit_headers() {
    let app = spawn_app_setting("RATE_LIMIT_LOGIN", "3/60s").await;
    for remaining in [2, 1, 0] {
        let resp = app.login_json("someone", "some password").await;
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["ratelimit-limit"], "3");
        assert_eq!(resp.headers()["ratelimit-remaining"], remaining.to_string().as_str());
        assert!(resp.headers().contains_key("ratelimit-reset"));
    }
    let resp = app.login_json("someone", "some password").await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_error(resp, 429, "rate_limited").await;
}

/// An instance that allows two logins a minute per client and trusts `X-Forwarded-For` from
/// the proxies at `trusted`.
async fn behind_proxies_at(trusted: &str) -> TestApp {
    spawn_app_settings(&[
        ("RATE_LIMIT_LOGIN", "2/60s"),
        ("TRUST_PROXY_HEADERS", "true"),
        ("TRUSTED_PROXY_IPS", trusted),
    ])
    .await
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_from_an_untrusted_peer() {
    let app = behind_proxies_at("10.0.0.0/8").await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let resp = app.login_json_from(&format!("203.0.113.{i}"), "x", "yyyyyyyy").await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 429], "all three count against 127.0.0.1");
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_from_a_trusted_peer() {
    let app = behind_proxies_at("127.0.0.1/32").await;
    let user = app.new_user().await;
    for i in 0..3 {
        let resp = app.login_json_from(&format!("198.51.100.7, 203.0.113.{i}"), &user.username, &user.password).await;
        assert_eq!(resp.status(), 200, "each forwarded client has its own budget");
    }
    let ip = app.last_login_ip(&user).await;
    assert_eq!(ip, "203.0.113.2", "the right-most untrusted hop is the client");
}

#[tokio::test]
async fn login_and_refresh_answer_503_when_redis_is_unreachable() {
    let (proxy, app) = spawn_app_behind_redis_proxy().await;
    let (user, session) = app.user_session().await;

    proxy.cut();
    let login = app.login_json(&user.username, &user.password).await;
    assert_eq!(login.status(), 503);
    assert!(login.headers().contains_key("retry-after"));
    let refresh = app.refresh(&session.refresh).await;
    assert_eq!(refresh.status(), 503);
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 503, "protected routes fail closed");

    proxy.restore();
    app.eventually("redis back", || async { app.login_json(&user.username, &user.password).await.status() == 200 })
        .await;
}

#[tokio::test]
async fn login_answers_503_and_writes_nothing_when_postgres_is_unreachable() {
    let proxy = CuttableProxy::start("127.0.0.1:5432").await;
    let port = proxy.port;
    let database = crate::helpers::fresh_database().await;
    let db = database.clone();
    let app = spawn_app_with(move |l| {
        l.set("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{port}/{db}")).set("DEPENDENCY_TIMEOUT", "500ms");
    })
    .await;
    let user = app.new_user().await;

    proxy.cut();
    let resp = app.login_json(&user.username, &user.password).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));

    proxy.restore();
    app.eventually("postgres back", || async { app.login_json(&user.username, &user.password).await.status() == 200 })
        .await;
    let row = crate::helpers::connect(&database)
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM login_history WHERE successful), (SELECT count(*) FROM refresh_families)",
            &[],
        )
        .await
        .expect("row");
    let (history, families): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(history, families, "every stored session has its history row and no more");
}
