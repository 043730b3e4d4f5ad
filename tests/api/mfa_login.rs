//! The second step of an API login (`POST /api/v1/auth/mfa`, SPEC §9): a TOTP code or a
//! recovery code completes a login that answered `mfa_required`, exactly as `login-json` would
//! have; replays, twins, strangers' codes, dead tokens and guessing are refused.

use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestUser, assert_error, claims, refresh_cookie, spawn_app, spawn_app_setting, spawn_app_settings,
};
use crate::totp::{code_at, enrolled_user, last_step, next_code};

pub(crate) const SECOND_STEP: &str = "/api/v1/auth/mfa";

/// Logs `user` in with its password: the `mfa_token` of the 403 answer.
pub(crate) async fn mfa_token(app: &TestApp, user: &TestUser) -> String {
    let body = assert_error(app.login_json(&user.username, &user.password).await, 403, "mfa_required").await;
    body["mfa_token"].as_str().expect("mfa_token").to_string()
}

pub(crate) async fn second_step(app: &TestApp, token: &str, method: &str, code: &str) -> Response {
    app.post_json(SECOND_STEP, &json!({"mfa_token": token, "method": method, "code": code})).await
}

/// A code that is wrong now (none of the three steps around now shows it).
fn wrong_code(secret: &str, around: i64) -> String {
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| (around - 2..=around + 2).all(|s| code_at(secret, s) != *c))
        .expect("a wrong code")
}

#[tokio::test]
async fn a_totp_code_completes_the_login_as_login_json_would_with_amr_otp() {
    let app = spawn_app().await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    let resp = second_step(&app, &token, "totp", &next_code(&app, &user, &secret).await).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let refresh = refresh_cookie(&resp).expect("refresh cookie");
    let body: Value = resp.json().await.expect("json");
    let mut keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "expires_in", "token_type"]);
    assert_eq!(body["token_type"], "bearer");
    let access = body["access_token"].as_str().expect("token").to_string();
    assert_eq!(claims(&access)["amr"], json!(["pwd", "otp", "mfa"]));

    let sessions: Value = app.get_with("/api/v1/sessions", &access).await.json().await.expect("json");
    let current = sessions.as_array().expect("list").iter().find(|s| s["current"] == true).expect("current").clone();
    assert_eq!(current["amr"], json!(["pwd", "otp", "mfa"]));

    let refreshed = app.refresh(&refresh).await;
    assert_eq!(refreshed.status(), 200);
    let body: Value = refreshed.json().await.expect("json");
    assert_eq!(claims(body["access_token"].as_str().expect("token"))["amr"], json!(["pwd", "otp", "mfa"]));

    let method: String =
        app.db_value("SELECT detail->>'method' FROM security_events WHERE event_type = 'mfa_succeeded'", &[]).await;
    assert_eq!(method, "totp");
    // The token was single use.
    let again = second_step(&app, &token, "totp", &next_code(&app, &user, &secret).await).await;
    assert_error(again, 401, "invalid_mfa_token").await;
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let app = spawn_app().await;
    let (user, session, _, codes) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    // Case, spaces and dashes do not matter.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let resp = second_step(&app, &token, "recovery_code", &typed).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(claims(body["access_token"].as_str().expect("token"))["amr"], json!(["pwd", "otp", "mfa"]));
    let remaining: String = app
        .db_value("SELECT detail->>'remaining' FROM security_events WHERE event_type = 'recovery_code_used'", &[])
        .await;
    assert_eq!(remaining, "9");
    let method: String =
        app.db_value("SELECT detail->>'method' FROM security_events WHERE event_type = 'mfa_succeeded'", &[]).await;
    assert_eq!(method, "recovery_code");

    let token = mfa_token(&app, &user).await;
    assert_error(second_step(&app, &token, "recovery_code", &codes[3]).await, 401, "invalid_code").await;
    // A TOTP code is not a recovery code.
    assert_error(second_step(&app, &token, "recovery_code", "123456").await, 401, "invalid_code").await;
    assert_eq!(second_step(&app, &token, "recovery_code", &codes[4]).await.status(), 200);
    let summary: Value = app.get_with("/api/v1/mfa", &session.access).await.json().await.expect("json");
    assert_eq!(summary["recovery_codes_remaining"], 8);
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let app = spawn_app().await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    // The code that confirmed the authenticator does not sign in.
    let confirmed = code_at(&secret, last_step(&app, &user).await);
    let token = mfa_token(&app, &user).await;
    assert_error(second_step(&app, &token, "totp", &confirmed).await, 401, "invalid_code").await;

    let code = next_code(&app, &user, &secret).await;
    assert_eq!(second_step(&app, &token, "totp", &code).await.status(), 200);
    let token = mfa_token(&app, &user).await;
    assert_error(second_step(&app, &token, "totp", &code).await, 401, "invalid_code").await;
    assert_eq!(app.security_events("mfa_failed").await, 2);
}

#[tokio::test]
async fn of_two_parallel_logins_with_the_same_code_exactly_one_wins() {
    let app = spawn_app_setting("RATE_LIMIT_LOGIN", "100/60s").await;
    // Three accounts, one race each (a code can be raced only once: it is then spent).
    for _ in 0..3 {
        let (user, _, secret, _) = enrolled_user(&app).await;
        let (a, b) = (mfa_token(&app, &user).await, mfa_token(&app, &user).await);
        let code = next_code(&app, &user, &secret).await;
        let (ra, rb) = tokio::join!(second_step(&app, &a, "totp", &code), second_step(&app, &b, "totp", &code));
        let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401]);
    }
}

#[tokio::test]
async fn the_same_token_with_parallel_right_codes_opens_one_session() {
    let app = spawn_app().await;
    let (user, _, _, codes) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    // Three: with the password's attempt, within the default lockout threshold.
    let tries = codes.iter().take(3).map(|c| second_step(&app, &token, "recovery_code", c));
    let statuses: Vec<u16> = futures::future::join_all(tries).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 401].contains(s)), "{statuses:?}");
}

#[tokio::test]
async fn a_code_of_another_account_is_refused() {
    let app = spawn_app().await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let (other, _, other_secret, other_codes) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    let theirs = next_code(&app, &other, &other_secret).await;
    if theirs != next_code(&app, &user, &secret).await {
        assert_error(second_step(&app, &token, "totp", &theirs).await, 401, "invalid_code").await;
    }
    assert_error(second_step(&app, &token, "recovery_code", &other_codes[0]).await, 401, "invalid_code").await;
    // Their code is still theirs to use.
    let token = mfa_token(&app, &other).await;
    assert_eq!(second_step(&app, &token, "recovery_code", &other_codes[0]).await.status(), 200);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app_setting("MFA_TOKEN_TTL", "1s").await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let resp = second_step(&app, &token, "totp", &next_code(&app, &user, &secret).await).await;
    assert_error(resp, 401, "invalid_mfa_token").await;
}

#[tokio::test]
async fn a_token_out_of_attempts_is_gone_and_garbage_is_refused() {
    let app = spawn_app_setting("MFA_MAX_ATTEMPTS", "2").await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    let now = last_step(&app, &user).await;
    for _ in 0..2 {
        assert_error(second_step(&app, &token, "totp", &wrong_code(&secret, now)).await, 401, "invalid_code").await;
    }
    let right = next_code(&app, &user, &secret).await;
    assert_error(second_step(&app, &token, "totp", &right).await, 401, "invalid_mfa_token").await;
    assert_error(second_step(&app, "garbage", "totp", &right).await, 401, "invalid_mfa_token").await;
    let forged = "A".repeat(43);
    assert_error(second_step(&app, &forged, "totp", &right).await, 401, "invalid_mfa_token").await;
    // The right code was not spent by the dead token: a new one signs in with it.
    let token = mfa_token(&app, &user).await;
    assert_eq!(second_step(&app, &token, "totp", &right).await.status(), 200);
}

#[tokio::test]
async fn wrong_codes_lock_the_account_exactly_as_wrong_passwords_do() {
    let app =
        spawn_app_settings(&[("LOCKOUT_THRESHOLD", "4"), ("MFA_MAX_ATTEMPTS", "50"), ("RATE_LIMIT_LOGIN", "100/60s")])
            .await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let now = last_step(&app, &user).await;
    let wrong = wrong_code(&secret, now);
    // The password check is the first of the four attempts; three wrong codes use the rest.
    let token = mfa_token(&app, &user).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(second_step(&app, &token, "totp", &wrong).await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let resp = second_step(&app, &token, "totp", &next_code(&app, &user, &secret).await).await;
    assert_eq!(resp.status(), 429, "locked: the right code is refused too");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(app.login_json(&user.username, &user.password).await.status(), 429, "the login shares the lock");
    assert_eq!(app.security_events("lockout").await, 1);
}

#[tokio::test]
async fn parallel_wrong_codes_cannot_exceed_the_lockout_threshold() {
    let app = spawn_app_settings(&[
        ("LOCKOUT_THRESHOLD", "5"),
        ("MFA_MAX_ATTEMPTS", "100"),
        ("RATE_LIMIT_LOGIN", "1000/60s"),
        ("RATE_LIMIT_LOGIN_ACCOUNT", "1000/60s"),
    ])
    .await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let wrong = wrong_code(&secret, last_step(&app, &user).await);
    let token = mfa_token(&app, &user).await;
    let tries = (0..30).map(|_| second_step(&app, &token, "totp", &wrong));
    let statuses: Vec<u16> = futures::future::join_all(tries).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "the password took one attempt: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 26, "{statuses:?}");
    assert_eq!(app.security_events("mfa_failed").await, 4);
}

#[tokio::test]
async fn malformed_second_steps_are_answered_with_4xx() {
    let app = spawn_app_setting("RATE_LIMIT_LOGIN", "100/60s").await;
    let (user, _, _, _) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    for body in [
        json!({}),
        json!({"mfa_token": token, "method": "sms", "code": "123456"}),
        json!({"mfa_token": token, "method": "totp"}),
        json!({"mfa_token": token, "method": "totp", "code": 123456}),
        json!({"mfa_token": 1, "method": "totp", "code": "123456"}),
        json!({"mfa_token": token, "method": "totp", "code": "123456", "extra": true}),
    ] {
        let status = app.post_json(SECOND_STEP, &body).await.status().as_u16();
        assert!((400..500).contains(&status) && status != 404, "{body}: {status}");
    }
    assert_eq!(app.post_body(SECOND_STEP, "text/plain", "x").await.status(), 415);
    assert_eq!(app.post_body(SECOND_STEP, "application/json", "{").await.status(), 400);
    // A code of any length is just wrong.
    let resp = second_step(&app, &token, "totp", &"9".repeat(5000)).await;
    assert_error(resp, 401, "invalid_code").await;
}

#[tokio::test]
async fn a_second_step_from_a_foreign_origin_is_refused_as_a_login_is() {
    let app = spawn_app().await;
    let (user, _, secret, _) = enrolled_user(&app).await;
    let token = mfa_token(&app, &user).await;
    let code = next_code(&app, &user, &secret).await;
    let body = json!({"mfa_token": token, "method": "totp", "code": code});
    let foreign =
        app.client.post(app.url(SECOND_STEP)).header("origin", "https://evil.example").json(&body).send().await;
    assert_error(foreign.expect("send"), 403, "forbidden").await;
    // Refused before anything was spent: the same token and code still sign in.
    let own = app.client.post(app.url(SECOND_STEP)).header("origin", "http://auth.test").json(&body).send().await;
    assert_eq!(own.expect("send").status(), 200);
}
