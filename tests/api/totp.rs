//! TOTP as a second factor (SPEC §9): enrolment and confirmation, recovery codes, removal by the
//! user and by an admin, the key ring sealing the secrets, and malformed requests. Codes are
//! computed here from the secret the API hands out, as an authenticator app would.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, TestUser, assert_error, spawn_app, spawn_app_setting, test_layers};
use crate::mail::MailSink;

pub(crate) const ENROL: &str = "/api/v1/mfa/totp";
pub(crate) const CONFIRM: &str = "/api/v1/mfa/totp/confirm";
pub(crate) const SUMMARY: &str = "/api/v1/mfa";
pub(crate) const RECOVERY: &str = "/api/v1/mfa/recovery-codes";

/// The authenticator app for `secret` (base32).
pub(crate) fn authenticator(secret: &str) -> totp_rs::Totp {
    let secret = totp_rs::Secret::try_from_base32(secret).expect("base32 secret");
    totp_rs::Builder::new().with_secret(secret).build().expect("totp")
}

/// The code `secret` shows `steps` steps (of 30 s) from now.
pub(crate) fn code(secret: &str, steps: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    authenticator(secret).generate((now + 30 * steps) as u64).to_string()
}

/// The code of time step `step` (unix time / 30).
pub(crate) fn code_at(secret: &str, step: i64) -> String {
    authenticator(secret).generate((step * 30) as u64).to_string()
}

/// The last step whose code the user's authenticator had accepted.
pub(crate) async fn last_step(app: &TestApp, user: &TestUser) -> i64 {
    let id: uuid::Uuid = user.id.parse().expect("uuid");
    app.db_value("SELECT last_step FROM mfa_totp WHERE user_id = $1", &[&id]).await
}

/// A code the server accepts now: the one of the step after the last accepted one.
pub(crate) async fn next_code(app: &TestApp, user: &TestUser, secret: &str) -> String {
    code_at(secret, last_step(app, user).await + 1)
}

/// Starts an enrolment: the secret and the URI.
pub(crate) async fn start(app: &TestApp, access: &str) -> (String, String) {
    let resp = app.post_with(ENROL, access).await;
    assert_eq!(resp.status(), 200, "enrol");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.expect("json");
    (body["secret"].as_str().expect("secret").to_string(), body["otpauth_uri"].as_str().expect("uri").to_string())
}

/// Enrols and confirms TOTP for the session's user (with the current step's code): the secret
/// and the ten recovery codes. The next code a login may use is `code(&secret, 1)`.
pub(crate) async fn enrol(app: &TestApp, access: &str) -> (String, Vec<String>) {
    let (secret, _) = start(app, access).await;
    let resp = app.call(Method::POST, CONFIRM, Some(access), Some(&json!({"code": code(&secret, 0)}))).await;
    assert_eq!(resp.status(), 200, "confirm");
    let body: Value = resp.json().await.expect("json");
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("str").to_string())
        .collect();
    (secret, codes)
}

/// A user with TOTP confirmed, its session, secret and recovery codes.
pub(crate) async fn enrolled_user(app: &TestApp) -> (TestUser, Session, String, Vec<String>) {
    let (user, session) = app.user_session().await;
    let (secret, codes) = enrol(app, &session.access).await;
    (user, session, secret, codes)
}

async fn summary(app: &TestApp, access: &str) -> Value {
    let resp = app.get_with(SUMMARY, access).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn remove(app: &TestApp, access: &str, body: Value) -> Response {
    app.call(Method::DELETE, ENROL, Some(access), Some(&body)).await
}

#[tokio::test]
async fn a_confirmed_authenticator_gives_ten_recovery_codes_and_makes_the_login_ask_for_a_code() {
    let app = spawn_app().await;
    let (user, session) = app.user_session().await;
    let before = summary(&app, &session.access).await;
    assert_eq!(before, json!({"totp": false, "recovery_codes_remaining": 0, "webauthn_credentials": 0, "methods": []}));

    let (secret, uri) = start(&app, &session.access).await;
    assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
    assert!(uri.starts_with(&format!("otpauth://totp/auth-service:{}?", user.username)), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")) && uri.contains("issuer=auth-service"), "{uri}");
    // Unconfirmed, it is no factor yet.
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 200);
    assert_eq!(summary(&app, &session.access).await["totp"], false);

    let resp = app.call(Method::POST, CONFIRM, Some(&session.access), Some(&json!({"code": code(&secret, 0)}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.expect("json");
    let codes = body["recovery_codes"].as_array().expect("codes");
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    assert!(codes.iter().all(|c| c.as_str().is_some_and(|c| c.len() == 12 && c.matches('-').count() == 2)));

    assert_eq!(
        summary(&app, &session.access).await,
        json!({"totp": true, "recovery_codes_remaining": 10, "webauthn_credentials": 0, "methods": ["totp", "recovery_code"]})
    );
    let body = assert_error(app.login_json(&user.username, &user.password).await, 403, "mfa_required").await;
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert!(body["mfa_token"].is_string());
    assert_eq!(app.security_events("mfa_enrolled").await, 1);
    let stored: i64 = app.db_value("SELECT count(*) FROM mfa_recovery_codes", &[]).await;
    assert_eq!(stored, 10);
}

#[tokio::test]
async fn a_confirmed_authenticator_is_not_replaced_and_a_wrong_confirmation_code_locks_nothing() {
    let app = spawn_app_setting("LOCKOUT_THRESHOLD", "2").await;
    let (user, session) = app.user_session().await;
    let confirm = |code: String| {
        let (app, access) = (&app, session.access.clone());
        async move { app.call(Method::POST, CONFIRM, Some(&access), Some(&json!({"code": code}))).await }
    };
    assert_error(confirm("123456".into()).await, 409, "conflict").await;

    let (secret, _) = start(&app, &session.access).await;
    let wrong = if code(&secret, 0) == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        assert_error(confirm(wrong.into()).await, 422, "invalid_field").await;
    }
    // Restarting replaces the unconfirmed secret: the old one's code no longer confirms.
    let (second, _) = start(&app, &session.access).await;
    assert_ne!(second, secret);
    if code(&secret, 0) != code(&second, 0) {
        assert_error(confirm(code(&secret, 0)).await, 422, "invalid_field").await;
    }
    assert_eq!(confirm(code(&second, 0)).await.status(), 200);
    // No lockout from the wrong confirmation codes: the password still signs in (to the second step).
    assert_error(app.login_json(&user.username, &user.password).await, 403, "mfa_required").await;

    assert_error(app.post_with(ENROL, &session.access).await, 409, "conflict").await;
    assert_error(confirm(code(&second, 1)).await, 409, "conflict").await;
}

#[tokio::test]
async fn without_encryption_keys_enrolment_answers_503_and_everything_else_works() {
    let app = spawn_app_setting("MFA_ENCRYPTION_KEYS", "").await;
    let (_, session) = app.user_session().await;
    let body = assert_error(app.post_with(ENROL, &session.access).await, 503, "service_unavailable").await;
    assert!(body["detail"].as_str().expect("detail").contains("MFA_ENCRYPTION_KEYS"), "{body}");
    assert_eq!(summary(&app, &session.access).await["totp"], false);
}

#[test]
fn a_malformed_key_setting_stops_startup_naming_it() {
    let dir = std::env::temp_dir();
    for bad in [
        "nocolon",
        "k1:tooshort",
        "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let mut layers = test_layers("unused", &dir);
        layers.set("MFA_ENCRYPTION_KEYS", bad);
        let err = layers.build().expect_err(bad).to_string();
        assert!(err.contains("MFA_ENCRYPTION_KEYS"), "{err}");
        assert!(!err.contains("AAAAAAAA"), "the key is not echoed: {err}");
    }
}

#[tokio::test]
async fn the_secret_is_stored_sealed_under_the_named_key() {
    let app = spawn_app().await;
    let (_, session) = app.user_session().await;
    let (secret, _) = start(&app, &session.access).await;
    let raw = totp_rs::Secret::try_from_base32(&secret).expect("base32");
    let (sealed, kid): (Vec<u8>, String) = {
        let row = app.db().await.query_one("SELECT secret_sealed, key_id FROM mfa_totp", &[]).await.expect("row");
        (row.get(0), row.get(1))
    };
    assert_eq!(kid, "test1");
    assert!(!sealed.windows(raw.as_bytes().len()).any(|w| w == raw.as_bytes()), "the secret is not in the clear");
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    assert_eq!(sealed.len(), 12 + 20 + 16, "nonce, sealed secret, tag");
}

#[tokio::test]
async fn removal_needs_the_password_or_a_current_code() {
    let app = spawn_app().await;
    let (user, session, secret, _) = enrolled_user(&app).await;

    assert_error(remove(&app, &session.access, json!({})).await, 422, "invalid_field").await;
    assert_error(
        remove(&app, &session.access, json!({"password": user.password, "code": "1"})).await,
        422,
        "invalid_field",
    )
    .await;
    assert_error(remove(&app, &session.access, json!({"password": "not the password"})).await, 403, "forbidden").await;
    assert_error(remove(&app, &session.access, json!({"code": "000000x"})).await, 401, "invalid_code").await;
    // The confirmation's code is spent.
    let spent = code_at(&secret, last_step(&app, &user).await);
    assert_error(remove(&app, &session.access, json!({"code": spent})).await, 401, "invalid_code").await;
    assert_eq!(app.security_events("mfa_failed").await, 2);
    assert_eq!(summary(&app, &session.access).await["totp"], true);

    let resp = remove(&app, &session.access, json!({"code": next_code(&app, &user, &secret).await})).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(summary(&app, &session.access).await["recovery_codes_remaining"], 0);
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 200, "no second step any more");
    assert_error(remove(&app, &session.access, json!({"password": user.password})).await, 404, "not_found").await;

    // With the password, after a new enrolment.
    enrol(&app, &session.access).await;
    assert_eq!(remove(&app, &session.access, json!({"password": user.password})).await.status(), 204);
    assert_eq!(app.security_events("mfa_removed").await, 2);
    let by_admin: bool = app
        .db_value(
            "SELECT bool_or((detail->>'by_admin')::boolean) FROM security_events WHERE event_type = 'mfa_removed'",
            &[],
        )
        .await;
    assert!(!by_admin);
}

#[tokio::test]
async fn wrong_passwords_for_a_removal_lock_the_account_as_a_password_change_does() {
    let app = crate::helpers::spawn_app_settings(&[("LOCKOUT_THRESHOLD", "2"), ("LOCKOUT_BASE", "60s")]).await;
    let (user, session, _, _) = enrolled_user(&app).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(remove(&app, &session.access, json!({"password": "not the password"})).await.status().as_u16());
    }
    assert_eq!(statuses, [403, 403, 429]);
    assert_eq!(remove(&app, &session.access, json!({"password": user.password})).await.status(), 429);
    assert_eq!(summary(&app, &session.access).await["totp"], true);
}

#[tokio::test]
async fn recovery_codes_can_be_replaced_with_the_password() {
    let app = spawn_app().await;
    let (user, session, _, old) = enrolled_user(&app).await;
    let resp = app.call(Method::POST, RECOVERY, Some(&session.access), Some(&json!({"password": "wrong one"}))).await;
    assert_error(resp, 403, "forbidden").await;
    let resp = app.call(Method::POST, RECOVERY, Some(&session.access), Some(&json!({"password": user.password}))).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    let new: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).expect("codes");
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));
    assert_eq!(summary(&app, &session.access).await["recovery_codes_remaining"], 10);

    let token = crate::mfa_login::mfa_token(&app, &user).await;
    let resp = crate::mfa_login::second_step(&app, &token, "recovery_code", &old[0]).await;
    assert_error(resp, 401, "invalid_code").await;
    let resp = crate::mfa_login::second_step(&app, &token, "recovery_code", &new[0]).await;
    assert_eq!(resp.status(), 200);

    // Without TOTP there is nothing to replace.
    let (_, other) = app.user_session().await;
    let resp = app.call(Method::POST, RECOVERY, Some(&other.access), Some(&json!({"password": "x"}))).await;
    assert_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn an_admin_removes_every_factor_of_a_user_who_is_mailed_a_notice() {
    let sink = MailSink::start().await;
    let app = crate::password_reset::app_mailing_to(&sink, &[]).await;
    let (user, session, _, _) = enrolled_user(&app).await;
    let enrolled = sink.wait_for_subject(&user.email, "Your sign-in methods changed").await;
    assert!(enrolled.text.contains("added"), "{}", enrolled.text);
    let user_id: uuid::Uuid = user.id.parse().expect("uuid");
    // A passkey row, as the passkey flows store one.
    app.db()
        .await
        .execute(
            "INSERT INTO webauthn_credentials (id, user_id, credential_id, passkey, name)
             VALUES (gen_random_uuid(), $1, '\\x0102'::bytea, '{}'::jsonb, 'key')",
            &[&user_id],
        )
        .await
        .expect("passkey");
    assert_eq!(summary(&app, &session.access).await["webauthn_credentials"], 1);

    let path = format!("/api/v1/users/{}/mfa", user.id);
    assert_error(app.delete_with(&path, &session.access).await, 403, "forbidden").await;
    let (_, admin) = app.admin_user().await;
    assert_error(app.delete_with("/api/v1/users/not-a-uuid/mfa", &admin.access).await, 404, "not_found").await;
    let unknown = format!("/api/v1/users/{}/mfa", uuid::Uuid::now_v7());
    assert_error(app.delete_with(&unknown, &admin.access).await, 404, "not_found").await;
    assert_eq!(app.delete_with(&path, &admin.access).await.status(), 204);

    assert_eq!(
        summary(&app, &session.access).await,
        json!({"totp": false, "recovery_codes_remaining": 0, "webauthn_credentials": 0, "methods": []})
    );
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 200);
    let by_admin: i64 = app
        .db_value(
            "SELECT count(*) FROM security_events WHERE event_type = 'mfa_removed' AND user_id = $1
               AND actor_id IS NOT NULL AND actor_id <> user_id AND (detail->>'by_admin')::boolean",
            &[&user_id],
        )
        .await;
    assert_eq!(by_admin, 2, "one event for TOTP, one for the passkey");
    // The verification mail of the signup, the notice of the enrolment, and this one.
    let mails = sink.wait_for_count(&user.email, 3).await;
    assert!(mails.iter().any(|m| m.text.contains("administrator removed")), "{mails:?}");
    // Nothing left to remove: still 204, and no second notice.
    assert_eq!(app.delete_with(&path, &admin.access).await.status(), 204);
}

#[tokio::test]
async fn malformed_bodies_are_answered_with_4xx() {
    let app = spawn_app().await;
    let (_, session) = app.user_session().await;
    start(&app, &session.access).await;
    for body in [json!({}), json!({"code": 123456}), json!({"code": "123456", "extra": 1}), json!([1])] {
        let resp = app.call(Method::POST, CONFIRM, Some(&session.access), Some(&body)).await;
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{body}: {status}");
    }
    let resp = app
        .client
        .post(app.url(CONFIRM))
        .bearer_auth(&session.access)
        .header("content-type", "text/plain")
        .body("123456")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 415);
    let resp = app
        .client
        .post(app.url(CONFIRM))
        .bearer_auth(&session.access)
        .header("content-type", "application/json")
        .body("{\"code\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let long = "9".repeat(10_000);
    assert_error(
        app.call(Method::POST, CONFIRM, Some(&session.access), Some(&json!({"code": long}))).await,
        422,
        "invalid_field",
    )
    .await;
    // Strangers get nothing.
    assert_eq!(app.call(Method::POST, ENROL, None, None).await.status(), 401);
    assert_eq!(app.call(Method::GET, SUMMARY, Some("garbage"), None).await.status(), 401);
}

#[tokio::test]
async fn rekey_reseals_every_secret_under_the_first_key_of_the_ring() {
    const OLD: &str = "test1:dGVzdC1vbmx5LW1mYS1rZXktMzItYnl0ZXMtbG9uZyE";
    const NEW: &str = "next:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";
    let app = spawn_app().await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let (second, _, second_secret, _) = enrolled_user(&app).await;
    let url = crate::helpers::database_url(&app.database);

    let out = crate::helpers::run_cli(&["mfa", "rekey"], &[("DATABASE_URL", url.clone())]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MFA_ENCRYPTION_KEYS"));

    let ring = format!("{NEW},{OLD}");
    let out = crate::helpers::run_cli(
        &["mfa", "rekey"],
        &[("DATABASE_URL", url.clone()), ("MFA_ENCRYPTION_KEYS", ring.clone())],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 2"), "{}", String::from_utf8_lossy(&out.stdout));
    let kids: Vec<String> = app
        .db()
        .await
        .query("SELECT key_id FROM mfa_totp", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kids, ["next", "next"]);
    // Idempotent.
    let out =
        crate::helpers::run_cli(&["mfa", "rekey"], &[("DATABASE_URL", url), ("MFA_ENCRYPTION_KEYS", ring.clone())])
            .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 0"));

    // An instance without the new key cannot open them; one with the new ring (even with the old
    // key dropped) signs in.
    let token = crate::mfa_login::mfa_token(&app, &user).await;
    let resp = crate::mfa_login::second_step(&app, &token, "totp", &next_code(&app, &user, &secret).await).await;
    assert_eq!(resp.status(), 503);
    let rotated = crate::helpers::spawn_app_on(&app.database, |l| {
        l.set("MFA_ENCRYPTION_KEYS", NEW);
    })
    .await;
    for (u, s) in [(&user, &secret), (&second, &second_secret)] {
        let token = crate::mfa_login::mfa_token(&rotated, u).await;
        let resp = crate::mfa_login::second_step(&rotated, &token, "totp", &next_code(&rotated, u, s).await).await;
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn no_totp_secret_code_or_mfa_token_reaches_the_log() {
    use tokio::io::AsyncReadExt;

    use crate::helpers::{free_port, fresh_database, serve_command};

    let db = fresh_database().await;
    let port = free_port();
    let mut child = serve_command("totplogs", &db, port)
        .await
        .env("MFA_ENCRYPTION_KEYS", "logs:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA")
        .spawn()
        .expect("spawn");
    // Read the output as it comes: a full pipe would block the server's logging.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        out + &err
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::wait_until_ready(&base).await;
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = client.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let password = "Sup3r-secret-passw0rd";
    let signup = json!({"username": "totp_log", "email": "totp_log@example.com", "password": password});
    assert_eq!(post("/api/v1/users/signup", None, signup).await.expect("signup").status(), 201);
    let login = json!({"username": "totp_log", "password": password});
    let body: Value =
        post("/api/v1/auth/login-json", None, login.clone()).await.expect("login").json().await.expect("json");
    let access = body["access_token"].as_str().expect("token").to_string();
    let body: Value = post(ENROL, Some(&access), json!({})).await.expect("enrol").json().await.expect("json");
    let secret = body["secret"].as_str().expect("secret").to_string();
    let confirm_code = code(&secret, 0);
    let body: Value =
        post(CONFIRM, Some(&access), json!({"code": confirm_code})).await.expect("confirm").json().await.expect("json");
    let codes: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).expect("codes");
    let body: Value =
        post("/api/v1/auth/login-json", None, login.clone()).await.expect("login").json().await.expect("json");
    let token = body["mfa_token"].as_str().expect("mfa_token").to_string();
    let step = |code: &str, method: &str| json!({"mfa_token": token, "method": method, "code": code});
    let wrong = post("/api/v1/auth/mfa", None, step("000000", "totp")).await.expect("wrong");
    assert_eq!(wrong.status(), 401);
    let ok = post("/api/v1/auth/mfa", None, step(&codes[0], "recovery_code")).await.expect("recovery");
    assert_eq!(ok.status(), 200);

    let pid = child.id().expect("pid");
    std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill");
    let status =
        tokio::time::timeout(std::time::Duration::from_secs(15), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let out = reader.await.expect("output");
    assert!(out.contains("/api/v1/auth/mfa"), "requests are logged");
    // (A 6-digit code could match any timestamp's digits: the secret that makes it is checked.)
    let mut secrets = vec![secret.clone(), token.clone(), password.to_string()];
    secrets.extend(codes.iter().cloned());
    secrets.extend(codes.iter().map(|c| c.replace('-', "")));
    for line in out.lines() {
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "a secret leaked into: {line}");
        }
    }
}
