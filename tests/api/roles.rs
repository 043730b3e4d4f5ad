//! Roles and their administration: who may manage them, how a change reaches the next token
//! and `me`, and the admin events that record each change.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, claims, run_cli, spawn_app, superuser_env};

async fn create_role(app: &TestApp, token: &str, name: &str) -> Value {
    let body = json!({"name": name, "description": "d"});
    let resp = app.call(Method::POST, "/api/v1/roles/create", Some(token), Some(&body)).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.expect("json")
}

#[tokio::test]
async fn every_admin_route_is_401_without_a_token_403_for_a_plain_user_and_works_for_an_admin() {
    let app = spawn_app().await;
    let (_, admin_session) = app.admin_user().await;
    let (_plain, plain_session) = app.user_session().await;
    let target = app.new_user().await;
    let role = create_role(&app, &admin_session.access, "route_check").await;
    let role_id = role["id"].as_str().expect("id").to_string();
    let doomed = create_role(&app, &admin_session.access, "doomed").await;
    let doomed_id = doomed["id"].as_str().expect("id").to_string();
    let victim = app.new_user().await;

    let cases: Vec<(Method, String, Option<Value>, u16)> = vec![
        (Method::POST, "/api/v1/roles/create".into(), Some(json!({"name": "fresh_role"})), 201),
        (Method::PUT, format!("/api/v1/roles/update/{role_id}"), Some(json!({"description": "new"})), 200),
        (
            Method::POST,
            "/api/v1/user_roles/assign".into(),
            Some(json!({"user_id": target.id, "role_id": role_id})),
            201,
        ),
        (
            Method::POST,
            "/api/v1/user_roles/check".into(),
            Some(json!({"user_id": target.id, "role_name": "route_check"})),
            200,
        ),
        (Method::GET, "/api/v1/user_roles/list".into(), None, 200),
        (Method::GET, "/api/v1/admin/events".into(), None, 200),
        (Method::DELETE, format!("/api/v1/user_roles/{}/roles/{role_id}", target.id), None, 204),
        (Method::DELETE, format!("/api/v1/roles/delete/{doomed_id}"), None, 204),
        (Method::DELETE, format!("/api/v1/users/{}", victim.id), None, 204),
    ];
    for (method, path, body, ok) in cases {
        let anonymous = app.call(method.clone(), &path, None, body.as_ref()).await;
        assert_eq!(anonymous.status(), 401, "{method} {path} without a token");
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        let forbidden = app.call(method.clone(), &path, Some(&plain_session.access), body.as_ref()).await;
        assert_eq!(forbidden.status(), 403, "{method} {path} as a plain user");
        let allowed = app.call(method.clone(), &path, Some(&admin_session.access), body.as_ref()).await;
        assert_eq!(allowed.status(), ok, "{method} {path} as admin");
    }
}

#[tokio::test]
async fn roles_list_needs_any_valid_token() {
    let app = spawn_app().await;
    assert_eq!(app.call(Method::GET, "/api/v1/roles/list", None, None).await.status(), 401);
    let (_user, session) = app.user_session().await;
    let resp = app.call(Method::GET, "/api/v1/roles/list", Some(&session.access), None).await;
    assert_eq!(resp.status(), 200);
    let roles: Vec<Value> = resp.json().await.expect("json");
    let names: Vec<&str> = roles.iter().filter_map(|r| r["name"].as_str()).collect();
    for seeded in ["admin", "guest", "moderator", "service", "subscriber", "user"] {
        assert!(names.contains(&seeded), "{names:?}");
    }
}

#[tokio::test]
async fn a_duplicate_role_name_is_409_in_any_case() {
    let app = spawn_app().await;
    let (_, s) = app.admin_user().await;
    create_role(&app, &s.access, "editors").await;
    let resp = app.call(Method::POST, "/api/v1/roles/create", Some(&s.access), Some(&json!({"name": "EDITORS"}))).await;
    assert_eq!(resp.status(), 409);
    let resp =
        app.call(Method::POST, "/api/v1/roles/create", Some(&s.access), Some(&json!({"name": "bad name!"}))).await;
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let app = spawn_app().await;
    let (_, s) = app.admin_user().await;
    let user = app.new_user().await;
    let nobody = uuid::Uuid::new_v4();
    let t = Some(s.access.as_str());
    let put = app.call(Method::PUT, &format!("/api/v1/roles/update/{nobody}"), t, Some(&json!({"name": "x"}))).await;
    assert_eq!(put.status(), 404);
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/roles/delete/{nobody}"), t, None).await.status(), 404);
    assert_eq!(app.call(Method::DELETE, "/api/v1/roles/delete/not-a-uuid", t, None).await.status(), 404);
    let no_user = json!({"user_id": nobody, "role_name": "user"});
    assert_eq!(app.call(Method::POST, "/api/v1/user_roles/assign", t, Some(&no_user)).await.status(), 404);
    let no_role = json!({"user_id": user.id, "role_id": nobody});
    assert_eq!(app.call(Method::POST, "/api/v1/user_roles/assign", t, Some(&no_role)).await.status(), 404);
    let path = format!("/api/v1/user_roles/{}/roles/{nobody}", user.id);
    assert_eq!(app.call(Method::DELETE, &path, t, None).await.status(), 404);
    let both = json!({"user_id": user.id, "role_id": nobody, "role_name": "user"});
    assert_eq!(app.call(Method::POST, "/api/v1/user_roles/assign", t, Some(&both)).await.status(), 422);
}

#[tokio::test]
async fn a_role_assigned_by_id_and_one_by_name_appear_in_the_next_token_and_in_me() {
    let app = spawn_app().await;
    let (_, s) = app.admin_user().await;
    let user = app.new_user().await;
    let editors = create_role(&app, &s.access, "editors").await;
    let by_id = json!({"user_id": user.id, "role_id": editors["id"]});
    let resp = app.call(Method::POST, "/api/v1/user_roles/assign", Some(&s.access), Some(&by_id)).await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["role_name"], "editors");
    let by_name = json!({"user_id": user.id, "role_name": "Moderator"});
    assert_eq!(
        app.call(Method::POST, "/api/v1/user_roles/assign", Some(&s.access), Some(&by_name)).await.status(),
        201
    );
    assert_eq!(
        app.call(Method::POST, "/api/v1/user_roles/assign", Some(&s.access), Some(&by_name)).await.status(),
        409
    );

    let session = app.login(&user).await;
    assert_eq!(claims(&session.access)["roles"], json!(["editors", "moderator", "user"]));
    let me: Value = app.get_with("/api/v1/user_roles/me", &session.access).await.json().await.expect("json");
    assert_eq!(me["id"], user.id.as_str());
    assert_eq!(me["username"], user.username.as_str());
    assert_eq!(me["roles"], json!(["editors", "moderator", "user"]));
}

#[tokio::test]
async fn me_returns_the_guest_principal_without_a_token_or_with_a_bad_one() {
    let app = spawn_app().await;
    for token in [None, Some("not.a.token")] {
        let resp = app.call(Method::GET, "/api/v1/user_roles/me", token, None).await;
        assert_eq!(resp.status(), 200);
        let me: Value = resp.json().await.expect("json");
        assert_eq!(me["roles"], json!(["guest"]));
        assert_eq!(me["id"], Value::Null);
    }
}

#[tokio::test]
async fn removing_the_admin_role_takes_effect_on_the_very_next_request_with_the_same_token() {
    let app = spawn_app().await;
    let (first_admin, first) = app.admin_user().await;
    let (_, second) = app.admin_user().await;
    assert_eq!(app.call(Method::GET, "/api/v1/user_roles/list", Some(&first.access), None).await.status(), 200);

    let roles: Vec<Value> = app.get_with("/api/v1/roles/list", &second.access).await.json().await.expect("json");
    let admin_id =
        roles.iter().find(|r| r["name"] == "admin").expect("admin role")["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/user_roles/{}/roles/{admin_id}", first_admin.id);
    assert_eq!(app.call(Method::DELETE, &path, Some(&second.access), None).await.status(), 204);

    assert_eq!(app.call(Method::GET, "/api/v1/user_roles/list", Some(&first.access), None).await.status(), 403);
}

#[tokio::test]
async fn deleting_a_role_removes_it_from_its_holders() {
    let app = spawn_app().await;
    let (_, s) = app.admin_user().await;
    let user = app.new_user().await;
    let role = create_role(&app, &s.access, "temporary").await;
    app.call(
        Method::POST,
        "/api/v1/user_roles/assign",
        Some(&s.access),
        Some(&json!({"user_id": user.id, "role_id": role["id"]})),
    )
    .await;
    let path = format!("/api/v1/roles/delete/{}", role["id"].as_str().expect("id"));
    assert_eq!(app.call(Method::DELETE, &path, Some(&s.access), None).await.status(), 204);
    let check = json!({"user_id": user.id, "role_name": "temporary"});
    let resp: Value = app
        .call(Method::POST, "/api/v1/user_roles/check", Some(&s.access), Some(&check))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(resp["allowed"], false);
    assert_eq!(claims(&app.login(&user).await.access)["roles"], json!(["user"]));
}

#[tokio::test]
async fn role_check_is_open_to_the_service_role() {
    let app = spawn_app().await;
    let service = app.new_user().await;
    app.grant_role(&service, "service").await;
    let s = app.login(&service).await;
    let user = app.new_user().await;
    let body = json!({"user_id": user.id, "role_name": "user"});
    let resp = app.call(Method::POST, "/api/v1/user_roles/check", Some(&s.access), Some(&body)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.expect("json")["allowed"], true);
}

#[tokio::test]
async fn admin_events_list_each_administrative_action_newest_first_with_filters_and_pagination() {
    let app = spawn_app().await;
    let (admin_user, s) = app.admin_user().await;
    let user = app.new_user().await;
    let t = Some(s.access.as_str());
    let role = create_role(&app, &s.access, "auditors").await;
    let rid = role["id"].as_str().expect("id").to_string();
    app.call(Method::PUT, &format!("/api/v1/roles/update/{rid}"), t, Some(&json!({"description": null}))).await;
    app.call(Method::POST, "/api/v1/user_roles/assign", t, Some(&json!({"user_id": user.id, "role_id": rid}))).await;
    app.call(Method::DELETE, &format!("/api/v1/user_roles/{}/roles/{rid}", user.id), t, None).await;
    app.call(Method::DELETE, &format!("/api/v1/roles/delete/{rid}"), t, None).await;
    app.call(Method::DELETE, &format!("/api/v1/users/{}", user.id), t, None).await;

    let page: Value = app.get_with("/api/v1/admin/events?size=100", &s.access).await.json().await.expect("json");
    let types: Vec<&str> = page["items"].as_array().expect("items").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        vec!["user_deleted", "role_deleted", "role_removed", "role_assigned", "role_updated", "role_created"]
    );
    assert!(page["items"].as_array().expect("items").iter().all(|e| e["actor_id"] == admin_user.id.as_str()));

    let filtered: Value = app
        .get_with(&format!("/api/v1/admin/events?type=role_assigned&user_id={}", user.id), &s.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(filtered["total"], 1);
    let paged: Value = app.get_with("/api/v1/admin/events?page=2&size=4", &s.access).await.json().await.expect("json");
    assert_eq!(paged["total"], 6);
    assert_eq!(paged["pages"], 2);
    assert_eq!(paged["items"].as_array().expect("items").len(), 2);
    for bad in ["page=0", "size=101", "size=x", "user_id=nope"] {
        assert_eq!(app.get_with(&format!("/api/v1/admin/events?{bad}"), &s.access).await.status(), 422, "{bad}");
        if !bad.starts_with("user_id") {
            assert_eq!(app.get_with(&format!("/api/v1/user_roles/list?{bad}"), &s.access).await.status(), 422, "{bad}");
        }
    }
}

#[tokio::test]
async fn login_failures_lockouts_and_reuse_appear_in_admin_events() {
    let app = spawn_app().await;
    let (_, s) = app.admin_user().await;
    let user = app.new_user().await;
    app.login_json(&user.username, "wrong password!").await;
    let page: Value =
        app.get_with(&format!("/api/v1/admin/events?user_id={}", user.id), &s.access).await.json().await.expect("json");
    assert_eq!(page["items"][0]["type"], "login_failed");
    assert_eq!(page["items"][0]["ip_address"], "127.0.0.1");
}

#[tokio::test]
async fn the_admin_made_by_create_superuser_can_administer_over_http() {
    let app = spawn_app().await;
    let env = superuser_env(&app.database, "boss", "boss@example.com", "the boss password");
    let out = run_cli(&["create-superuser"], &env).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let boss = TestUser {
        id: String::new(),
        username: "boss".into(),
        email: "boss@example.com".into(),
        password: "the boss password".into(),
    };
    let s = app.login(&boss).await;
    assert_eq!(claims(&s.access)["roles"], json!(["admin"]));
    create_role(&app, &s.access, "made_by_boss").await;
}
