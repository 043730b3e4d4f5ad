//! Login by form and by JSON: the token and cookie it returns, one answer for every failure, the
//! claims of the access token, the login history, and rehashing on login.

use crate::helpers::{claims, refresh_cookie, spawn_app, spawn_app_on};

const PASSWORD_HASH: &str = "SELECT password_hash FROM users WHERE username = $1";

#[tokio::test]
async fn login_with_a_form_returns_a_bearer_token_and_the_refresh_cookie() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .form(&[("username", user.username.as_str()), ("password", user.password.as_str())])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.starts_with("refresh_token="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/auth", "Max-Age=2592000"] {
        assert!(cookie.contains(attr), "missing {attr}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "Secure only when COOKIE_SECURE: {cookie}");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn login_json_accepts_the_email_in_any_case() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let resp = app.login_json(&user.email.to_uppercase(), &user.password).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn login_returns_the_same_401_for_an_unknown_user_and_a_wrong_password() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let unknown = app.login_json("nobody_at_all", "whatever password").await;
    let wrong = app.login_json(&user.username, "not the password").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.headers()["www-authenticate"], "Bearer");
    let a = unknown.text().await.expect("body");
    let b = wrong.text().await.expect("body");
    assert_eq!(a, b);
    assert_eq!(a, r#"{"detail":"invalid username or password","error":"unauthorized"}"#);
}

#[tokio::test]
async fn login_returns_401_for_an_inactive_user_with_the_right_password() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    app.db()
        .await
        .execute("UPDATE users SET is_active = false WHERE username = $1", &[&user.username])
        .await
        .expect("update");
    let resp = app.login_json(&user.username, &user.password).await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn login_returns_422_when_the_form_lacks_a_password_and_415_for_json_sent_to_the_form_route() {
    let app = spawn_app().await;
    let missing = app.client.post(app.url("/api/v1/auth/login")).form(&[("username", "x")]).send().await.expect("send");
    assert_eq!(missing.status(), 422);
    let json = app.post_json("/api/v1/auth/login", &serde_json::json!({"username": "x", "password": "y"})).await;
    assert_eq!(json.status(), 415);
}

#[tokio::test]
async fn the_access_token_carries_the_rfc_9068_header_and_the_claims_of_the_spec() {
    let app = spawn_app().await;
    let (user, session) = app.user_session().await;
    let header = jsonwebtoken::decode_header(&session.access).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(header.kid.is_some());
    let claims = claims(&session.access);
    assert_eq!(claims["iss"], "http://auth.test");
    assert_eq!(claims["aud"], "test-audience");
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["username"], user.username.as_str());
    assert_eq!(claims["email"], user.email.as_str());
    assert_eq!(claims["roles"], serde_json::json!(["user"]));
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 900);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].is_string());
}

#[tokio::test]
async fn login_history_records_successes_and_failures_newest_first() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    app.login_json(&user.username, "wrong password!").await;
    let session = app.login(&user).await;
    let resp = app
        .client
        .get(app.url("/api/v1/users/user/history?page=1&size=10"))
        .bearer_auth(&session.access)
        .header("user-agent", "history-test")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["total"], 2);
    assert_eq!(body["page"], 1);
    assert_eq!(body["size"], 10);
    assert_eq!(body["pages"], 1);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items[0]["successful"], true);
    assert_eq!(items[1]["successful"], false);
    assert_eq!(items[0]["ip_address"], "127.0.0.1");
    assert!(items[0]["login_time"].is_string());
}

#[tokio::test]
async fn login_history_rejects_invalid_pagination_with_422() {
    let app = spawn_app().await;
    let (_user, session) = app.user_session().await;
    for query in ["page=0", "size=0", "size=101", "page=abc"] {
        let resp = app.get_with(&format!("/api/v1/users/user/history?{query}"), &session.access).await;
        assert_eq!(resp.status(), 422, "{query}");
    }
}

#[tokio::test]
async fn login_rehashes_a_password_stored_with_older_parameters() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let before: String = app.db_value(PASSWORD_HASH, &[&user.username]).await;
    assert!(before.contains("m=256"), "{before}");

    let stronger = spawn_app_on(&app.database, |l| {
        l.set("ARGON2_MEMORY_KIB", "512");
    })
    .await;
    let resp = stronger.login_json(&user.username, &user.password).await;
    assert_eq!(resp.status(), 200);
    assert!(refresh_cookie(&resp).is_some());
    let after: String = app.db_value(PASSWORD_HASH, &[&user.username]).await;
    assert!(after.contains("m=512"), "{after}");
    assert_eq!(stronger.login_json(&user.username, &user.password).await.status(), 200);
}
