//! Signup: the new user, conflicts in any case, field validation, malformed and oversized bodies,
//! and the hashing queue when it is full.

use crate::helpers::{assert_error, spawn_app, spawn_app_settings, unique_name};

#[tokio::test]
async fn signup_returns_201_with_the_new_user() {
    let app = spawn_app().await;
    let name = unique_name("alice");
    let resp = app.signup(&name, &format!("{name}@example.com"), "a good long password").await;
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["username"], name.as_str());
    assert_eq!(body["email"], format!("{name}@example.com"));
    assert_eq!(body["is_active"], true);
    assert!(uuid::Uuid::parse_str(body["user_id"].as_str().expect("id")).is_ok());
}

#[tokio::test]
async fn signup_returns_409_when_the_username_is_taken_in_another_case() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let resp = app.signup(&user.username.to_uppercase(), "other@example.com", "a good long password").await;
    let body = assert_error(resp, 409, "conflict").await;
    assert_eq!(body["detail"], "username already exists");
}

#[tokio::test]
async fn signup_returns_409_when_the_email_is_taken_in_another_case() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let resp = app.signup(&unique_name("bob"), &user.email.to_uppercase(), "a good long password").await;
    assert_eq!(resp.status(), 409);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["detail"], "email already exists");
}

async fn assert_422(username: &str, email: &str, password: &str, detail_contains: &str) {
    let app = spawn_app().await;
    let body = assert_error(app.signup(username, email, password).await, 422, "invalid_field").await;
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(detail_contains), "{detail}");
}

#[tokio::test]
async fn signup_returns_422_for_an_invalid_email() {
    assert_422("carol_1", "not-an-email", "a good long password", "email").await;
}

#[tokio::test]
async fn signup_returns_422_for_a_username_that_is_too_short() {
    assert_422("ab", "ab@example.com", "a good long password", "username").await;
}

#[tokio::test]
async fn signup_returns_422_for_a_username_with_forbidden_characters() {
    assert_422("dave smith", "dave@example.com", "a good long password", "username").await;
}

#[tokio::test]
async fn signup_returns_422_for_a_password_shorter_than_8_characters() {
    assert_422("erin_1", "erin@example.com", "short", "at least 8").await;
}

#[tokio::test]
async fn signup_returns_422_for_a_password_longer_than_128_characters() {
    assert_422("frank_1", "frank@example.com", &"x".repeat(129), "at most 128").await;
}

#[tokio::test]
async fn signup_returns_422_for_a_password_equal_to_the_username() {
    assert_422("grace_hopper", "grace@example.com", "Grace_Hopper", "must not equal").await;
}

#[tokio::test]
async fn signup_returns_422_for_a_password_equal_to_the_email() {
    assert_422("heidi_1", "heidi@example.com", "heidi@example.com", "must not equal").await;
}

#[tokio::test]
async fn signup_returns_422_when_a_field_is_missing() {
    let app = spawn_app().await;
    let resp = app
        .post_json("/api/v1/users/signup", &serde_json::json!({"username": "ivan_1", "password": "long enough pw"}))
        .await;
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn signup_returns_400_for_malformed_json() {
    let app = spawn_app().await;
    let resp = app.post_body("/api/v1/users/signup", "application/json", "{\"username\": ").await;
    assert_error(resp, 400, "bad_request").await;
}

#[tokio::test]
async fn signup_returns_415_for_a_body_that_is_not_json() {
    let app = spawn_app().await;
    let resp = app.post_body("/api/v1/users/signup", "text/plain", "username=x").await;
    assert_error(resp, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn signup_returns_413_for_a_body_over_64_kib() {
    let app = spawn_app().await;
    let big = serde_json::json!({"username": "x".repeat(70_000), "email": "a@b.co", "password": "long enough pw"});
    assert_error(app.post_json("/api/v1/users/signup", &big).await, 413, "payload_too_large").await;
}

#[tokio::test]
async fn signup_answers_503_with_retry_after_when_the_hashing_queue_is_full() {
    let app = spawn_app_settings(&[
        ("HASH_CONCURRENCY", "1"),
        ("HASH_QUEUE_TIMEOUT", "1ms"),
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "2"),
        ("RATE_LIMIT_SIGNUP", "1000/60s"),
    ])
    .await;
    let attempts = (0..8).map(|i| {
        let app = &app;
        async move {
            let name = unique_name(&format!("burst{i}"));
            app.signup(&name, &format!("{name}@example.com"), "a good long password").await
        }
    });
    let responses = futures::future::join_all(attempts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 201 || *s == 503), "{statuses:?}");
    let busy: Vec<&reqwest::Response> = responses.iter().filter(|r| r.status() == 503).collect();
    assert!(!busy.is_empty(), "some signups must be refused: {statuses:?}");
    assert!(busy.iter().all(|r| r.headers().contains_key("retry-after")));
}
