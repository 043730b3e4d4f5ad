//! Rules that hold whatever order requests arrive in: built-in roles and the last admin stay, names
//! come from the current account, client assertions are not post-dated, RP-initiated logout
//! verifies its hint, and what an authorization request carries comes back.

use auth_actors::keys::{KeyAlg, KeySet};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Session, TestApp, TestUser, assert_error, claims, redis_connection, shared_keys, spawn_app, spawn_app_setting,
};
use crate::oauth::{assertion_grant, client_key, oauth_error, register_signer, token_endpoint, token_form};
use crate::oidc::{
    self, Fixture, LOGOUT_REDIRECT, authorize, code_for, exchange, fixture, hidden_fields, page, redirected, request,
    sign_in,
};

async fn role_id(app: &TestApp, name: &str) -> Uuid {
    app.db_value("SELECT id FROM roles WHERE name = $1", &[&name]).await
}

async fn admins(app: &TestApp) -> i64 {
    app.db_value("SELECT count(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = 'admin'", &[])
        .await
}

async fn conflict_detail(resp: reqwest::Response) -> String {
    let body = assert_error(resp, 409, "conflict").await;
    body["detail"].as_str().expect("detail").to_string()
}

#[tokio::test]
async fn built_in_roles_cannot_be_renamed_or_deleted_and_no_role_takes_a_built_in_name() {
    let app = spawn_app().await;
    let (_, a) = app.admin_user().await;
    for name in ["admin", "service", "moderator", "user", "guest", "subscriber"] {
        let id = role_id(&app, name).await;
        let path = format!("/api/v1/roles/update/{id}");
        let rename = app.call(Method::PUT, &path, Some(&a.access), Some(&json!({"name": format!("old-{name}")}))).await;
        let detail = conflict_detail(rename).await;
        assert!(detail.contains("built in"), "{detail}");
        let delete = app.call(Method::DELETE, &format!("/api/v1/roles/delete/{id}"), Some(&a.access), None).await;
        assert!(conflict_detail(delete).await.contains("built in"));
        // Its description may change, and naming it by its own name is no rename.
        let same = json!({"name": name, "description": "still here"});
        assert_eq!(app.call(Method::PUT, &path, Some(&a.access), Some(&same)).await.status(), 200);
    }

    // A role does not take the name of a built-in role, even one missing from this installation.
    app.db().await.execute("DELETE FROM roles WHERE name = 'service'", &[]).await.expect("drop service");
    let created =
        app.call(Method::POST, "/api/v1/roles/create", Some(&a.access), Some(&json!({"name": "helpers"}))).await;
    let custom: Value = created.json().await.expect("json");
    let path = format!("/api/v1/roles/update/{}", custom["id"].as_str().expect("id"));
    let detail =
        conflict_detail(app.call(Method::PUT, &path, Some(&a.access), Some(&json!({"name": "Service"}))).await).await;
    assert!(detail.contains("built-in"), "{detail}");
    assert_eq!(app.call(Method::PUT, &path, Some(&a.access), Some(&json!({"name": "assistants"}))).await.status(), 200);
    assert_eq!(app.call(Method::GET, "/api/v1/user_roles/list", Some(&a.access), None).await.status(), 200);
}

#[tokio::test]
async fn the_last_admin_can_neither_drop_the_admin_role_nor_be_deleted() {
    let app = spawn_app().await;
    let (me, s) = app.admin_user().await;
    let admin_role = role_id(&app, "admin").await;
    let own_grant = format!("/api/v1/user_roles/{}/roles/{admin_role}", me.id);
    let detail = conflict_detail(app.call(Method::DELETE, &own_grant, Some(&s.access), None).await).await;
    assert!(detail.contains("last admin"), "{detail}");
    let delete_self = format!("/api/v1/users/{}", me.id);
    assert!(
        conflict_detail(app.call(Method::DELETE, &delete_self, Some(&s.access), None).await)
            .await
            .contains("last admin")
    );
    // Nothing changed: still admin, still signed in.
    assert_eq!(app.call(Method::GET, "/api/v1/user_roles/list", Some(&s.access), None).await.status(), 200);
    assert_eq!(admins(&app).await, 1);

    // With a second admin, either may go.
    let (other, _) = app.admin_user().await;
    assert_eq!(app.call(Method::DELETE, &own_grant, Some(&s.access), None).await.status(), 204);
    assert_eq!(admins(&app).await, 1);
    let other_session = app.login(&other).await;
    let delete_other = format!("/api/v1/users/{}", other.id);
    assert!(
        conflict_detail(app.call(Method::DELETE, &delete_other, Some(&other_session.access), None).await)
            .await
            .contains("last admin")
    );
}

/// Two admins, each taking `admin` from the other at the same moment, `rounds` times; a round
/// deletes the other account instead when `delete` says so. The survivor of a round meets a new
/// admin in the next.
async fn admins_remove_each_other_at_once(delete: bool) {
    let app = spawn_app_setting("RATE_LIMIT_ENABLED", "false").await;
    let admin_role = role_id(&app, "admin").await;
    let mut survivor = app.admin_user().await;
    for round in 0..20 {
        let newcomer = app.admin_user().await;
        assert_eq!(admins(&app).await, 2, "round {round} starts with two admins");
        let take = |by: &Session, from: &TestUser| {
            let path = if delete {
                format!("/api/v1/users/{}", from.id)
            } else {
                format!("/api/v1/user_roles/{}/roles/{admin_role}", from.id)
            };
            let (app, access) = (&app, by.access.clone());
            async move { app.delete_with(&path, &access).await }
        };
        let (first, second) = tokio::join!(take(&survivor.1, &newcomer.0), take(&newcomer.1, &survivor.0));
        let statuses = [first.status().as_u16(), second.status().as_u16()];
        assert_eq!(admins(&app).await, 1, "round {round}: {statuses:?} must leave exactly one admin");
        assert!(statuses.iter().all(|s| [204, 403, 409, 401].contains(s)), "round {round}: {statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "round {round}: {statuses:?}");
        let kept = if statuses[1] == 204 { newcomer.0 } else { survivor.0 };
        // A deletion refused after it fenced its target (the race lost to the other one) leaves
        // that admin signed out: the survivor signs in again.
        let session = app.login(&kept).await;
        survivor = (kept, session);
    }
}

#[tokio::test]
async fn two_admins_removing_each_others_admin_role_at_once_leave_one_admin_every_round() {
    admins_remove_each_other_at_once(false).await;
}

#[tokio::test]
async fn two_admins_deleting_each_other_at_once_leave_one_admin_every_round() {
    admins_remove_each_other_at_once(true).await;
}

async fn rename(app: &TestApp, session: &Session, username: &str) {
    let resp = app.update_profile(&session.access, json!({"username": username})).await;
    assert_eq!(resp.status(), 200, "rename");
}

#[tokio::test]
async fn a_renamed_accounts_old_token_reports_its_new_name_never_the_account_that_took_the_old_one() {
    let app = spawn_app().await;
    let (_, introspector) = app.admin_user().await;
    let (user, session) = app.user_session().await;
    // Both answers are read (and cached) before the rename.
    assert_eq!(app.introspect(&introspector.access, &session.access).await["username"], user.username.as_str());
    let me: Value = app.get_with("/api/v1/user_roles/me", &session.access).await.json().await.expect("json");
    assert_eq!(me["username"], user.username.as_str());

    let new_name = format!("{}_renamed", user.username);
    rename(&app, &session, &new_name).await;
    let squatter = app.signup(&user.username, &format!("other_{}", user.email), "another fine password").await;
    assert_eq!(squatter.status(), 201, "the old name is free again");

    let answer = app.introspect(&introspector.access, &session.access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], user.id.as_str());
    assert_eq!(answer["username"], new_name.as_str(), "introspection names the account as it is now");
    assert_eq!(answer["email"], user.email.as_str());
    let me: Value = app.get_with("/api/v1/user_roles/me", &session.access).await.json().await.expect("json");
    assert_eq!(me["username"], new_name.as_str(), "me names the account as it is now");
    assert_eq!(me["id"], user.id.as_str());
}

/// The authorization epoch as Redis holds it now.
async fn epoch(app: &TestApp) -> Option<String> {
    redis::cmd("GET")
        .arg(app.app.config.redis_keys.authz_epoch())
        .query_async(&mut redis_connection().await)
        .await
        .expect("get")
}

#[tokio::test]
async fn a_rename_replaces_the_authorization_epoch_and_a_password_change_alone_does_not() {
    let app = spawn_app().await;
    let (user, session) = app.user_session().await;
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 200);
    let before = epoch(&app).await;
    assert!(before.is_some(), "an epoch is in place once a token was checked");

    // A password change fences the other sessions; every cached standing stays good.
    let change = json!({"old_password": user.password, "new_password": "a brand new passphrase"});
    assert_eq!(app.update_profile(&session.access, change).await.status(), 200);
    assert_eq!(epoch(&app).await, before, "a password change alone keeps every cache");

    // A rename changes what every check reports: every instance must read it again.
    rename(&app, &session, &format!("{}_renamed", user.username)).await;
    assert_ne!(epoch(&app).await, before, "a rename replaces the epoch");
}

#[tokio::test]
async fn a_client_assertion_with_nbf_or_iat_in_the_future_beyond_the_clock_skew_is_refused() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let key = client_key(KeyAlg::ES256);
    let client = register_signer(&app, &admin, "early", &key.jwks).await;
    let skew = app.app.config.tokens.clock_skew.as_secs() as i64;
    let aud = token_endpoint(&app);
    let token = |claims: Value| {
        let assertion = key.set.sign("JWT", &claims).expect("sign");
        let app = &app;
        async move { token_form(app, &assertion_grant(&assertion)).await }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |extra: Value| {
        let mut c = json!({ "iss": client.id, "sub": client.id, "aud": aud, "exp": now + 600,
                            "jti": Uuid::new_v4().to_string() });
        c.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        c
    };
    for (what, extra) in [
        ("nbf", json!({ "nbf": now + skew + 120 })),
        ("iat", json!({ "iat": now + skew + 120 })),
        ("nbf and iat", json!({ "nbf": now + skew + 120, "iat": now + skew + 120 })),
    ] {
        let resp = token(claims(extra)).await;
        assert_eq!(resp.status(), 401, "an assertion with {what} in the future must be refused");
        oauth_error(resp, 401, "invalid_client").await;
    }
    // Within the skew (a client whose clock is a little ahead) and in the past, it authenticates.
    let within = json!({ "nbf": now + skew / 2, "iat": now + skew / 2 });
    assert_eq!(token(claims(within)).await.status(), 200);
    assert_eq!(token(claims(json!({ "nbf": now - 5, "iat": now - 5 }))).await.status(), 200);
    let refused: i64 = app
        .db_value(
            "SELECT count(*) FROM security_events
             WHERE event_type = 'client_auth_failed' AND detail->>'reason' = 'assertion_not_yet_valid'",
            &[],
        )
        .await;
    assert_eq!(refused, 3);
}

/// A sign-out request's page: its status, and that it sent the browser nowhere.
async fn logout_page(browser: &reqwest::Client, app: &TestApp, method: Method, params: &[(&str, &str)]) -> u16 {
    let req = browser.request(method.clone(), app.url("/oauth2/logout"));
    let req = if method == Method::GET { req.query(params) } else { req.form(params) };
    let resp = req.send().await.expect("send");
    assert!(resp.headers().get("location").is_none(), "{method} {params:?} is a page, never a redirect");
    page(resp).await.0
}

#[tokio::test]
async fn rp_initiated_logout_refuses_an_unverifiable_hint_and_a_client_id_that_is_not_the_hints_audience() {
    let Fixture { app, rp, user, verifier, challenge, browser } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    let admin = app.admin_session().await;
    let other = oidc::register(&app, &admin, json!({ "client_name": "Other App", "first_party": true })).await;
    let back = code_for(&app, &browser, &rp, &user, &challenge).await;
    let tokens: Value = exchange(&app, &rp, &back["code"], &verifier).await.json().await.expect("json");
    let id_token = tokens["id_token"].as_str().expect("id token");
    let access_token = tokens["access_token"].as_str().expect("access token");
    // One character flipped well inside the signature (the last one may carry unused bits).
    let at = id_token.len() - 10;
    let flipped = if &id_token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &id_token[..at], &id_token[at + 1..]);

    let to = ("post_logout_redirect_uri", LOGOUT_REDIRECT);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("a client_id other than the hint's audience", vec![("id_token_hint", id_token), ("client_id", &other.id), to]),
        ("the same, without a redirect", vec![("id_token_hint", id_token), ("client_id", &other.id)]),
        ("a hint whose signature does not verify", vec![("id_token_hint", &tampered), ("client_id", &rp.id), to]),
        ("the same, without a client_id or a redirect", vec![("id_token_hint", &tampered)]),
        ("an access token as the hint", vec![("id_token_hint", access_token), ("client_id", &rp.id), to]),
        ("a hint that is no JWT", vec![("id_token_hint", "not-a-token"), ("client_id", &rp.id), to]),
    ];
    for (what, params) in &cases {
        assert_eq!(logout_page(&browser, &app, Method::GET, params).await, 400, "GET with {what}");
    }

    // The confirmation form of a good request, replayed with another client_id: refused too, and
    // the browser session stays.
    let (status, confirm) = page(
        browser.get(app.url("/oauth2/logout")).query(&[("id_token_hint", id_token), to]).send().await.expect("send"),
    )
    .await;
    assert_eq!(status, 200, "a verified hint gets the confirmation page");
    let mut fields = hidden_fields(&confirm);
    fields.push(("client_id".into(), other.id.clone()));
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(logout_page(&browser, &app, Method::POST, &fields).await, 400, "POST with another client_id");
    let still = redirected(&authorize(&app, &browser, &request(&rp, &challenge, &[("prompt", "none")])).await);
    assert!(still.contains_key("code"), "still signed in: {still:?}");

    // An expired hint this service signed still names its client (RP-Initiated Logout §2).
    let keys = KeySet::load(&shared_keys().await, None).expect("keys");
    let mut expired = claims(id_token);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let expired = keys.sign("JWT", &expired).expect("sign");
    let query = [("id_token_hint", expired.as_str()), ("client_id", rp.id.as_str()), to, ("state", "s")];
    let (status, confirm) =
        page(browser.get(app.url("/oauth2/logout")).query(&query).send().await.expect("send")).await;
    assert_eq!(status, 200);
    let out = browser.post(app.url("/oauth2/logout")).form(&hidden_fields(&confirm)).send().await.expect("send");
    assert_eq!(redirected(&out)["state"], "s");
}

#[tokio::test]
async fn a_nonce_too_long_to_carry_is_refused_at_the_redirect_uri_and_a_long_state_always_comes_back() {
    let Fixture { app, rp, user, verifier, challenge, browser } =
        fixture(spawn_app().await, json!({ "first_party": true })).await;
    let long_state = "s".repeat(4000);
    let too_long = "n".repeat(513);
    let params = request(&rp, &challenge, &[("nonce", &too_long), ("state", &long_state)]);
    let refused = redirected(&authorize(&app, &browser, &params).await);
    assert_eq!(refused.get("error").map(String::as_str), Some("invalid_request"), "{refused:?}");
    assert_eq!(refused["state"], long_state);
    assert_eq!(refused["iss"], app.app.config.tokens.issuer);

    // The longest nonce allowed, and the long state, come back whole.
    let longest = "n".repeat(512);
    let params = request(&rp, &challenge, &[("nonce", &longest), ("state", &long_state)]);
    let (status, html) = page(authorize(&app, &browser, &params).await).await;
    assert_eq!(status, 200, "the sign-in page");
    let signed_in = sign_in(&app, &browser, &html, &user.username, &user.password).await;
    let back = redirected(&signed_in);
    assert_eq!(back["state"], long_state);
    let tokens: Value = exchange(&app, &rp, &back["code"], &verifier).await.json().await.expect("json");
    assert_eq!(claims(tokens["id_token"].as_str().expect("id token"))["nonce"], longest.as_str());
}
