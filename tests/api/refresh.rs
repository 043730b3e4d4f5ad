//! Refresh-token rotation: reuse detection, concurrent refreshes, the grace window, the JSON
//! body form, and the origin check.

use crate::helpers::{TestApp, refresh_cookie, spawn_app, spawn_app_setting};

/// A cookie refresh of `token` from a page of `origin`.
async fn refresh_from(app: &TestApp, token: &str, origin: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/refresh"))
        .header("cookie", format!("refresh_token={token}"))
        .header("origin", origin)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn refresh_rotates_so_the_new_cookie_works_and_the_old_one_then_kills_the_family() {
    let app = spawn_app_setting("REFRESH_REUSE_GRACE", "0s").await;
    let (_, session) = app.user_session().await;

    let first = app.refresh(&session.refresh).await;
    assert_eq!(first.status(), 200);
    let second_token = refresh_cookie(&first).expect("rotated cookie");
    assert_ne!(second_token, session.refresh);
    let body: serde_json::Value = first.json().await.expect("json");
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "cookie clients get the token only in the cookie");

    let third_token = app.rotate(&second_token).await;

    let reuse = app.refresh(&session.refresh).await;
    assert_eq!(reuse.status(), 401);
    let body: serde_json::Value = reuse.json().await.expect("json");
    assert!(body["detail"].as_str().expect("detail").contains("reuse"));

    assert_eq!(app.refresh(&third_token).await.status(), 401, "the whole family is dead");
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 401, "and its access tokens");
    assert_eq!(app.security_events("refresh_reuse_detected").await, 1);
}

#[tokio::test]
async fn fifty_concurrent_refreshes_of_one_token_rotate_once_and_all_get_the_same_successor() {
    // Forty-nine of them are retries within the grace window; allow that many.
    let app = spawn_app_setting("REFRESH_GRACE_RETRIES", "49").await;
    let (user, session) = app.user_session().await;

    let responses = futures::future::join_all((0..50).map(|_| app.refresh(&session.refresh))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let successors: std::collections::HashSet<String> = responses.iter().filter_map(refresh_cookie).collect();
    assert_eq!(successors.len(), 1, "one successor for everyone");

    let tokens: i64 = app
        .db_value(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = $1",
            &[&user.username],
        )
        .await;
    assert_eq!(tokens, 2, "the login's token and exactly one successor");
    let successor = successors.into_iter().next().expect("one");
    assert_eq!(app.refresh(&successor).await.status(), 200, "the family is intact");
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_successor_without_revoking_the_family() {
    let app = spawn_app().await;
    let (_, session) = app.user_session().await;
    let first = refresh_cookie(&app.refresh(&session.refresh).await).expect("successor");
    let retry = app.refresh(&session.refresh).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(refresh_cookie(&retry).expect("successor"), first);
    assert_eq!(app.refresh(&first).await.status(), 200);
}

#[tokio::test]
async fn a_replay_after_the_grace_window_revokes_the_family() {
    let app = spawn_app_setting("REFRESH_REUSE_GRACE", "1s").await;
    let (_, session) = app.user_session().await;
    let successor = refresh_cookie(&app.refresh(&session.refresh).await).expect("successor");
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(app.refresh(&session.refresh).await.status(), 401);
    assert_eq!(app.refresh(&successor).await.status(), 401);
}

#[tokio::test]
async fn refresh_accepts_the_token_in_a_json_body_and_answers_with_the_successor_in_the_body() {
    let app = spawn_app().await;
    let (_, session) = app.user_session().await;
    let resp = app.post_json("/api/v1/auth/refresh", &serde_json::json!({"refresh_token": session.refresh})).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    let next = body["refresh_token"].as_str().expect("refresh token in body");
    assert_eq!(app.refresh(next).await.status(), 200);
}

#[tokio::test]
async fn refresh_refuses_a_cookie_sent_from_a_foreign_origin() {
    let app = spawn_app().await;
    let (_, session) = app.user_session().await;
    assert_eq!(refresh_from(&app, &session.refresh, "https://evil.example").await.status(), 403);
    assert_eq!(refresh_from(&app, &session.refresh, "http://auth.test").await.status(), 200);
}

#[tokio::test]
async fn refresh_without_a_token_or_with_garbage_is_401() {
    let app = spawn_app().await;
    assert_eq!(app.client.post(app.url("/api/v1/auth/refresh")).send().await.expect("send").status(), 401);
    assert_eq!(app.refresh("garbage").await.status(), 401);
}
