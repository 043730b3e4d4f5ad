//! `/metrics` after a scripted sequence: each counter moves by exactly what happened.

use crate::helpers::{TestApp, spawn_app, spawn_app_settings};

async fn sample(app: &TestApp, name: &str) -> f64 {
    app.metric(name).await
}

#[tokio::test]
async fn counters_move_by_the_expected_amounts_after_a_scripted_sequence() {
    let app = spawn_app_settings(&[("REFRESH_REUSE_GRACE", "0s"), ("RATE_LIMIT_SIGNUP", "3/60s")]).await;
    let names = [
        r#"auth_logins_total{outcome="success"}"#,
        r#"auth_logins_total{outcome="failure"}"#,
        r#"auth_refreshes_total{outcome="rotated"}"#,
        r#"auth_refreshes_total{outcome="reuse_detected"}"#,
        r#"auth_rate_limited_total{class="signup"}"#,
        r#"auth_actor_restarts_total{actor="rate_limiter"}"#,
        r#"auth_actor_failures_total{actor="rate_limiter"}"#,
        "auth_tokens_issued_total",
        r#"auth_jwks_responses_total{outcome="served"}"#,
    ];
    let mut before = Vec::new();
    for n in names {
        before.push(sample(&app, n).await);
    }

    let user = app.new_user().await; // signup 1 of 3
    let session = app.login(&user).await; // a login (token 1)
    assert_eq!(app.login_json(&user.username, "wrong password!").await.status(), 401); // a failed login
    let rotated = app.refresh(&session.refresh).await; // a refresh (token 2)
    assert_eq!(rotated.status(), 200);
    assert_eq!(app.refresh(&session.refresh).await.status(), 401); // a reuse
    app.new_user().await; // signup 2 of 3
    app.new_user().await; // signup 3 of 3
    assert_eq!(app.signup("limited_one", "limited@example.com", "a long password").await.status(), 429); // rate limited
    assert_eq!(app.get("/.well-known/jwks.json").await.status(), 200);
    let fail = app.fail_actor("rate_limiter").await;
    assert_eq!(fail.status(), 202); // an injected actor failure
    app.eventually("restart counted", || async {
        sample(&app, r#"auth_actor_restarts_total{actor="rate_limiter"}"#).await == before[5] + 1.0
    })
    .await;

    let expected = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0];
    for ((name, was), delta) in names.iter().zip(&before).zip(expected) {
        assert_eq!(sample(&app, name).await - was, delta, "{name}");
    }
}

#[tokio::test]
async fn metrics_are_openmetrics_text_with_route_templates_as_labels() {
    let app = spawn_app().await;
    let (_, s) = app.user_session().await;
    let sessions: Vec<serde_json::Value> =
        app.get_with("/api/v1/sessions", &s.access).await.json().await.expect("json");
    let id = sessions[0]["id"].as_str().expect("id");
    app.delete_with(&format!("/api/v1/sessions/{id}"), &s.access).await;

    let resp = app.get("/metrics").await;
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("application/openmetrics-text"));
    let text = resp.text().await.expect("body");
    assert!(text.contains(r#"route="/api/v1/sessions/{id}""#), "the template, not the raw path");
    assert!(!text.contains(id), "no raw ids in labels");
    for family in [
        "auth_http_requests_total",
        "auth_http_request_duration_seconds_bucket",
        "auth_argon2_duration_seconds_bucket",
        "auth_argon2_queue_depth",
        "auth_active_key_age_seconds",
        "auth_actor_calls_in_flight",
        "auth_db_pool_connections",
        "auth_postgres_errors_total",
        "auth_redis_errors_total",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
}
