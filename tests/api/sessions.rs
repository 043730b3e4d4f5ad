//! Logout, logout-all, password and username changes, the session list, and deleting a user.

use crate::helpers::spawn_app;

#[tokio::test]
async fn logout_revokes_the_session_blacklists_the_access_token_and_clears_the_cookie() {
    let app = spawn_app().await;
    let (_, session) = app.user_session().await;
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 200);

    let resp = app.logout(&session).await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie");
    assert!(cookie.starts_with("refresh_token=;") && cookie.contains("Max-Age=0"), "{cookie}");

    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 401);
    assert_eq!(app.refresh(&session.refresh).await.status(), 401);
}

#[tokio::test]
async fn logout_all_revokes_every_session_and_refuses_access_tokens_issued_before_it() {
    let app = spawn_app().await;
    let (user, laptop) = app.user_session().await;
    let phone = app.login(&user).await;

    let resp = app.post_with("/api/v1/auth/logout-all", &laptop.access).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["sessions_revoked"], 2);

    assert_eq!(app.get_with("/api/v1/sessions", &phone.access).await.status(), 401);
    assert_eq!(app.get_with("/api/v1/sessions", &laptop.access).await.status(), 401);
    assert_eq!(app.refresh(&phone.refresh).await.status(), 401);
    assert_eq!(app.refresh(&laptop.refresh).await.status(), 401);

    let fresh = app.login(&user).await;
    assert_eq!(app.get_with("/api/v1/sessions", &fresh.access).await.status(), 200, "new logins work again");
}

#[tokio::test]
async fn logout_all_requires_a_bearer_token() {
    let app = spawn_app().await;
    let resp = app.client.post(app.url("/api/v1/auth/logout-all")).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn a_password_change_needs_the_old_password_and_revokes_the_other_sessions() {
    let app = spawn_app().await;
    let (user, this) = app.user_session().await;
    let other = app.login(&user).await;

    let wrong = app
        .update_profile(
            &this.access,
            serde_json::json!({"old_password": "not it", "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(wrong.status(), 403);
    let missing = app.update_profile(&this.access, serde_json::json!({"new_password": "a brand new password"})).await;
    assert_eq!(missing.status(), 422);
    let weak = app
        .update_profile(&this.access, serde_json::json!({"old_password": user.password, "new_password": "short"}))
        .await;
    assert_eq!(weak.status(), 422);

    let ok = app
        .update_profile(
            &this.access,
            serde_json::json!({"old_password": user.password, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(ok.status(), 200);

    assert_eq!(app.refresh(&other.refresh).await.status(), 401, "other sessions are revoked");
    assert_eq!(app.get_with("/api/v1/sessions", &other.access).await.status(), 401, "with their access tokens");
    assert_eq!(app.get_with("/api/v1/sessions", &this.access).await.status(), 200);
    assert_eq!(app.refresh(&this.refresh).await.status(), 200, "the current session survives");
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 401);
    assert_eq!(app.login_json(&user.username, "a brand new password").await.status(), 200);
}

#[tokio::test]
async fn a_username_change_is_refused_with_409_when_taken() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let taken = app.new_user().await;
    let session = app.login(&user).await;
    let resp =
        app.update_profile(&session.access, serde_json::json!({"username": taken.username.to_uppercase()})).await;
    assert_eq!(resp.status(), 409);
    let resp =
        app.update_profile(&session.access, serde_json::json!({"username": format!("{}_x", user.username)})).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["username"], format!("{}_x", user.username));
}

#[tokio::test]
async fn sessions_lists_live_sessions_marks_the_current_one_and_revokes_one() {
    let app = spawn_app().await;
    let (user, a) = app.user_session().await;
    let b = app.login(&user).await;

    let list: Vec<serde_json::Value> = app.get_with("/api/v1/sessions", &a.access).await.json().await.expect("json");
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let other = list.iter().find(|s| s["current"] == false).expect("other session");
    assert_eq!(other["ip_address"], "127.0.0.1");

    let id = other["id"].as_str().expect("id");
    let resp = app.delete_with(&format!("/api/v1/sessions/{id}"), &a.access).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(app.refresh(&b.refresh).await.status(), 401);
    assert_eq!(app.get_with("/api/v1/sessions", &b.access).await.status(), 401, "its access token dies with it");
    assert_eq!(app.get_with("/api/v1/sessions", &a.access).await.status(), 200);

    let (_, s) = app.user_session().await;
    let mine: Vec<serde_json::Value> = app.get_with("/api/v1/sessions", &a.access).await.json().await.expect("json");
    let my_id = mine[0]["id"].as_str().expect("id");
    let resp = app.delete_with(&format!("/api/v1/sessions/{my_id}"), &s.access).await;
    assert_eq!(resp.status(), 404, "another user's session is not found");
}

#[tokio::test]
async fn deleting_a_user_needs_admin_and_kills_that_users_tokens() {
    let app = spawn_app().await;
    let admin = app.new_user().await;
    app.grant_role(&admin, "admin").await;
    let (victim, victim_session) = app.user_session().await;
    let admin_session = app.login(&admin).await;
    let path = format!("/api/v1/users/{}", victim.id);

    assert_eq!(app.client.delete(app.url(&path)).send().await.expect("send").status(), 401);
    let as_user = app.delete_with(&path, &victim_session.access).await;
    assert_eq!(as_user.status(), 403);
    let as_admin = app.delete_with(&path, &admin_session.access).await;
    assert_eq!(as_admin.status(), 204);

    assert_eq!(app.get_with("/api/v1/sessions", &victim_session.access).await.status(), 401);
    assert_eq!(app.refresh(&victim_session.refresh).await.status(), 401);
    let again = app.delete_with(&path, &admin_session.access).await;
    assert_eq!(again.status(), 404);
}
