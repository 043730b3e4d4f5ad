//! Passkeys: registration, listing, the second factor after a password, passwordless sign-in,
//! every refusal a hostile or broken client can provoke, replays raced in parallel, removal.

use reqwest::Method;
use serde_json::{Value, json};

use crate::authenticator::{Authenticator, Tamper};
use crate::helpers::{Session, TestApp, TestUser, assert_error, claims, spawn_app_settings};

const ORIGIN: &str = "http://auth.test";

async fn app() -> TestApp {
    spawn_app_settings(&[("RATE_LIMIT_LOGIN", "1000/60s")]).await
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("json")
}

/// Starts a registration for `session`: the ceremony id and the options.
async fn register_start(app: &TestApp, session: &Session) -> (String, Value) {
    let resp = app.call(Method::POST, "/api/v1/mfa/webauthn/register/start", Some(&session.access), None).await;
    assert_eq!(resp.status(), 200, "register start");
    let body = json_of(resp).await;
    (body["ceremony_id"].as_str().expect("ceremony_id").to_string(), body)
}

async fn register_finish(app: &TestApp, session: &Session, ceremony: &str, credential: Value) -> reqwest::Response {
    let body = json!({"ceremony_id": ceremony, "credential": credential, "name": "laptop"});
    app.call(Method::POST, "/api/v1/mfa/webauthn/register/finish", Some(&session.access), Some(&body)).await
}

/// Registers a passkey of `auth` for `session`; the stored credential's JSON.
async fn register(app: &TestApp, session: &Session, auth: &mut Authenticator) -> Value {
    let (ceremony, options) = register_start(app, session).await;
    let resp = register_finish(app, session, &ceremony, auth.create(&options)).await;
    assert_eq!(resp.status(), 201, "register finish");
    json_of(resp).await
}

async fn sign_in_start(app: &TestApp, body: Value) -> (String, Value) {
    let resp = app.post_json("/api/v1/auth/webauthn/start", &body).await;
    assert_eq!(resp.status(), 200, "sign-in start");
    let body = json_of(resp).await;
    (body["ceremony_id"].as_str().expect("ceremony_id").to_string(), body)
}

async fn sign_in_finish(
    app: &TestApp,
    ceremony: &str,
    credential: &Value,
    mfa_token: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({"ceremony_id": ceremony, "credential": credential});
    if let Some(t) = mfa_token {
        body["mfa_token"] = t.into();
    }
    app.post_json("/api/v1/auth/webauthn/finish", &body).await
}

/// The `mfa_token` of a password login of `user` (which has a second factor).
async fn mfa_token(app: &TestApp, user: &TestUser) -> String {
    let resp = app.login_json(&user.username, &user.password).await;
    let body = assert_error(resp, 403, "mfa_required").await;
    assert!(body["methods"].as_array().expect("methods").contains(&json!("webauthn")), "{body}");
    body["mfa_token"].as_str().expect("mfa_token").to_string()
}

/// A user with a registered passkey of a fresh device-bound authenticator.
async fn user_with_passkey(app: &TestApp) -> (TestUser, Session, Authenticator) {
    let (user, session) = app.user_session().await;
    let mut auth = Authenticator::new(ORIGIN);
    register(app, &session, &mut auth).await;
    (user, session, auth)
}

#[tokio::test]
async fn a_passkey_registers_as_a_discoverable_credential_and_is_listed() {
    let app = app().await;
    let (_user, session) = app.user_session().await;
    let (ceremony, options) = register_start(&app, &session).await;
    let pk = &options["publicKey"];
    assert_eq!(pk["rp"]["id"], "auth.test");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "preferred", "{options}");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required", "{options}");
    let mut auth = Authenticator::new(ORIGIN);
    let resp = register_finish(&app, &session, &ceremony, auth.create(&options)).await;
    assert_eq!(resp.status(), 201);
    let created = json_of(resp).await;
    assert_eq!(created["name"], "laptop");
    assert_eq!(created["backup_eligible"], false);

    let resp = app.get_with("/api/v1/mfa/webauthn/credentials", &session.access).await;
    assert_eq!(resp.status(), 200);
    let list = json_of(resp).await;
    let list = list.as_array().expect("list");
    assert_eq!(list.len(), 1);
    for field in ["id", "name", "created_at", "last_used_at", "sign_count", "backup_eligible", "backup_state"] {
        assert!(list[0].get(field).is_some(), "{field} missing: {}", list[0]);
    }
    assert_eq!(list[0]["id"], created["id"]);
    assert_eq!(app.security_events("mfa_enrolled").await, 1);

    // The next registration excludes it.
    let (_, options) = register_start(&app, &session).await;
    let excluded = options["publicKey"]["excludeCredentials"].as_array().expect("excludeCredentials");
    assert_eq!(excluded.len(), 1);
}

#[tokio::test]
async fn a_passkey_completes_a_password_login_as_the_second_factor() {
    let app = app().await;
    let (user, _session, mut auth) = user_with_passkey(&app).await;
    let token = mfa_token(&app, &user).await;
    let (ceremony, options) = sign_in_start(&app, json!({"mfa_token": token})).await;
    assert_eq!(options["publicKey"]["allowCredentials"].as_array().map(Vec::len), Some(1), "{options}");
    let resp = sign_in_finish(&app, &ceremony, &auth.get(&options), Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert!(crate::helpers::refresh_cookie(&resp).is_some(), "refresh cookie");
    let body = json_of(resp).await;
    let access = body["access_token"].as_str().expect("access_token");
    assert_eq!(claims(access)["amr"], json!(["pwd", "hwk", "mfa"]));

    let resp = app.get_with("/api/v1/sessions", access).await;
    let sessions = json_of(resp).await;
    let current = sessions.as_array().expect("list").iter().find(|s| s["current"] == true).expect("current").clone();
    assert_eq!(current["amr"], json!(["pwd", "hwk", "mfa"]));

    let (_, list) = (0, json_of(app.get_with("/api/v1/mfa/webauthn/credentials", access).await).await);
    assert_eq!(list[0]["sign_count"], 1);
    assert!(list[0]["last_used_at"].is_string());
    // The step is spent.
    let (ceremony, options) = sign_in_start(&app, json!({})).await;
    let resp = sign_in_finish(&app, &ceremony, &auth.get(&options), Some(&token)).await;
    assert_error(resp, 401, "invalid_mfa_token").await;
}

#[tokio::test]
async fn a_refused_second_factor_assertion_spends_an_attempt() {
    let app = app().await;
    let (user, _session, mut auth) = user_with_passkey(&app).await;
    let token = mfa_token(&app, &user).await;
    let (ceremony, options) = sign_in_start(&app, json!({"mfa_token": token})).await;
    let bad = auth.get_tampered(&options, &Tamper { signature: true, ..Tamper::default() });
    assert_error(sign_in_finish(&app, &ceremony, &bad, Some(&token)).await, 401, "invalid_code").await;
    assert_eq!(app.security_events("mfa_failed").await, 1);
    // The ceremony is gone with it; a new one with the same step works.
    let (ceremony2, options) = sign_in_start(&app, json!({"mfa_token": token})).await;
    assert_error(sign_in_finish(&app, &ceremony, &auth.get(&options), Some(&token)).await, 400, "invalid_ceremony")
        .await;
    let resp = sign_in_finish(&app, &ceremony2, &auth.get(&options), Some(&token)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_synced_passkey_signs_in_without_a_password() {
    let app = app().await;
    let (user, session) = app.user_session().await;
    let mut auth = Authenticator::synced(ORIGIN);
    let created = register(&app, &session, &mut auth).await;
    assert_eq!(created["backup_eligible"], true);
    let (ceremony, options) = sign_in_start(&app, json!({})).await;
    assert!(options.get("mediation").is_none(), "{options}");
    assert!(options["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty), "{options}");
    let resp = sign_in_finish(&app, &ceremony, &auth.get(&options), None).await;
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    let c = claims(body["access_token"].as_str().expect("access_token"));
    assert_eq!(c["amr"], json!(["swk", "mfa"]));
    assert_eq!(c["sub"], user.id);
    let passwordless: i64 = app
        .db_value(
            "SELECT count(*) FROM security_events WHERE event_type = 'mfa_succeeded' AND detail->>'passwordless' = 'true'",
            &[],
        )
        .await;
    assert_eq!(passwordless, 1);
}

#[tokio::test]
async fn every_bad_assertion_is_a_clear_4xx() {
    let app = app().await;
    let (_user, _session, mut auth) = user_with_passkey(&app).await;
    let cases = [
        ("origin", Tamper { origin: Some("https://evil.example".into()), ..Tamper::default() }),
        ("relying party id", Tamper { rp_id: Some("evil.example".into()), ..Tamper::default() }),
        ("challenge", Tamper { challenge: Some(crate::authenticator::b64(b"not the challenge")), ..Tamper::default() }),
        ("signature", Tamper { signature: true, ..Tamper::default() }),
        ("user verification", Tamper { no_user_verification: true, ..Tamper::default() }),
    ];
    for (what, tamper) in cases {
        let (ceremony, options) = sign_in_start(&app, json!({})).await;
        let bad = auth.get_tampered(&options, &tamper);
        let body = assert_error(sign_in_finish(&app, &ceremony, &bad, None).await, 401, "invalid_passkey").await;
        assert!(body["detail"].as_str().expect("detail").contains(what), "{what}: {body}");
    }
    // Malformed credential JSON.
    let (ceremony, _) = sign_in_start(&app, json!({})).await;
    for junk in [json!({}), json!("x"), json!({"id": 1, "response": []}), json!(null)] {
        assert_error(sign_in_finish(&app, &ceremony, &junk, None).await, 400, "invalid_credential").await;
    }
    // An unknown ceremony.
    let (_, options) = sign_in_start(&app, json!({})).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(sign_in_finish(&app, &unknown, &auth.get(&options), None).await, 400, "invalid_ceremony").await;
    // A ceremony id that is not a UUID is refused before anything else.
    let resp = app.post_json("/api/v1/auth/webauthn/finish", &json!({"ceremony_id": "x", "credential": {}})).await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    // A replayed assertion: its ceremony is used.
    let (ceremony, options) = sign_in_start(&app, json!({})).await;
    let good = auth.get(&options);
    assert_eq!(sign_in_finish(&app, &ceremony, &good, None).await.status(), 200);
    assert_error(sign_in_finish(&app, &ceremony, &good, None).await, 400, "invalid_ceremony").await;
    // An expired ceremony.
    let (ceremony, options) = sign_in_start(&app, json!({})).await;
    let id: uuid::Uuid = ceremony.parse().expect("uuid");
    app.db()
        .await
        .execute("UPDATE webauthn_ceremonies SET expires_at = now() - interval '1 second' WHERE id = $1", &[&id])
        .await
        .expect("expire");
    assert_error(sign_in_finish(&app, &ceremony, &auth.get(&options), None).await, 400, "invalid_ceremony").await;
    // A counter that goes backwards (a cloned authenticator).
    let (ceremony, options) = sign_in_start(&app, json!({})).await;
    auth.counter = Some(0);
    let body =
        assert_error(sign_in_finish(&app, &ceremony, &auth.get(&options), None).await, 401, "invalid_passkey").await;
    assert!(body["detail"].as_str().expect("detail").contains("counter"), "{body}");
}

#[tokio::test]
async fn bogus_passwordless_assertions_do_not_lock_the_account() {
    let app = spawn_app_settings(&[("RATE_LIMIT_LOGIN", "1000/60s"), ("LOCKOUT_THRESHOLD", "3")]).await;
    let (user, _session, mut auth) = user_with_passkey(&app).await;
    for _ in 0..6 {
        let (ceremony, options) = sign_in_start(&app, json!({})).await;
        let bad = auth.get_tampered(&options, &Tamper { signature: true, ..Tamper::default() });
        assert_error(sign_in_finish(&app, &ceremony, &bad, None).await, 401, "invalid_passkey").await;
    }
    assert_eq!(app.security_events("mfa_failed").await, 6);
    assert_eq!(app.metric("auth_logins_total{outcome=\"failure\"}").await, 6.0);
    // The password still gets to its second step, and the passkey still signs in.
    mfa_token(&app, &user).await;
    let (ceremony, options) = sign_in_start(&app, json!({})).await;
    assert_eq!(sign_in_finish(&app, &ceremony, &auth.get(&options), None).await.status(), 200);
}

#[tokio::test]
async fn a_ceremony_of_another_kind_or_user_is_refused() {
    let app = app().await;
    let (_alice, alice_session, mut alice_auth) = user_with_passkey(&app).await;
    let (_bob, bob_session) = app.user_session().await;
    // Bob's registration ceremony, finished by Alice.
    let (bob_ceremony, options) = register_start(&app, &bob_session).await;
    let mut other = Authenticator::new(ORIGIN);
    let resp = register_finish(&app, &alice_session, &bob_ceremony, other.create(&options)).await;
    assert_error(resp, 400, "invalid_ceremony").await;
    // ... which Bob can still finish.
    let mut bob_auth = Authenticator::new(ORIGIN);
    let (bob_ceremony, options) = register_start(&app, &bob_session).await;
    assert_eq!(register_finish(&app, &bob_session, &bob_ceremony, bob_auth.create(&options)).await.status(), 201);
    // A registration ceremony used to sign in.
    let (reg_ceremony, _) = register_start(&app, &alice_session).await;
    let (_, options) = sign_in_start(&app, json!({})).await;
    let assertion = alice_auth.get(&options);
    assert_error(sign_in_finish(&app, &reg_ceremony, &assertion, None).await, 400, "invalid_ceremony").await;
    // A sign-in ceremony used to register.
    let (auth_ceremony, _) = sign_in_start(&app, json!({})).await;
    let (_, reg_options) = register_start(&app, &alice_session).await;
    let resp = register_finish(&app, &alice_session, &auth_ceremony, other.create(&reg_options)).await;
    assert_error(resp, 400, "invalid_ceremony").await;
    // A registration from another origin, or malformed.
    let (ceremony, options) = register_start(&app, &alice_session).await;
    let phished =
        other.create_tampered(&options, &Tamper { origin: Some("https://evil.example".into()), ..Tamper::default() });
    assert_error(register_finish(&app, &alice_session, &ceremony, phished).await, 400, "invalid_credential").await;
    let (ceremony, _) = register_start(&app, &alice_session).await;
    assert_error(
        register_finish(&app, &alice_session, &ceremony, json!({"rawId": 5})).await,
        400,
        "invalid_credential",
    )
    .await;
}

#[tokio::test]
async fn parallel_replays_of_one_assertion_sign_in_once() {
    let app = app().await;
    let (_user, _session, mut auth) = user_with_passkey(&app).await;
    let (ceremony, options) = sign_in_start(&app, json!({})).await;
    let assertion = auth.get(&options);
    let tries = (0..8).map(|_| sign_in_finish(&app, &ceremony, &assertion, None));
    let statuses: Vec<u16> = futures::future::join_all(tries).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
}

#[tokio::test]
async fn deleting_a_passkey_needs_the_password_and_only_touches_ones_own() {
    let app = app().await;
    let (alice, alice_session, _auth) = user_with_passkey(&app).await;
    let (bob, bob_session, _bob_auth) = user_with_passkey(&app).await;
    let list = json_of(app.get_with("/api/v1/mfa/webauthn/credentials", &alice_session.access).await).await;
    let id = list[0]["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/mfa/webauthn/credentials/{id}");

    let wrong = json!({"password": "not the password"});
    assert_error(app.call(Method::DELETE, &path, Some(&alice_session.access), Some(&wrong)).await, 403, "forbidden")
        .await;
    // Bob, with his own right password, cannot delete Alice's.
    let bobs = json!({"password": bob.password});
    assert_error(app.call(Method::DELETE, &path, Some(&bob_session.access), Some(&bobs)).await, 404, "not_found").await;

    let right = json!({"password": alice.password});
    let resp = app.call(Method::DELETE, &path, Some(&alice_session.access), Some(&right)).await;
    assert_eq!(resp.status(), 204);
    let list = json_of(app.get_with("/api/v1/mfa/webauthn/credentials", &alice_session.access).await).await;
    assert_eq!(list.as_array().map(Vec::len), Some(0));
    assert_eq!(app.security_events("mfa_removed").await, 1);
    // Without a factor, the password alone signs in again.
    assert_eq!(app.login_json(&alice.username, &alice.password).await.status(), 200);
}

#[tokio::test]
async fn passkeys_are_off_when_public_url_is_an_ip_address() {
    let app = spawn_app_settings(&[("PUBLIC_URL", "http://127.0.0.1:8080")]).await;
    let (_user, session) = app.user_session().await;
    let resp = app.call(Method::POST, "/api/v1/mfa/webauthn/register/start", Some(&session.access), None).await;
    assert_error(resp, 503, "passkeys_unavailable").await;
    assert_error(app.post_json("/api/v1/auth/webauthn/start", &json!({})).await, 503, "passkeys_unavailable").await;
}

#[tokio::test]
async fn a_cloned_authenticator_cannot_reuse_a_counter_across_ceremonies_started_together() {
    let app = app().await;
    let (user, _session, mut auth) = user_with_passkey(&app).await;
    // Two second steps whose ceremonies both start while the stored counter is 0.
    let (first, second) = (mfa_token(&app, &user).await, mfa_token(&app, &user).await);
    let (c1, o1) = sign_in_start(&app, json!({"mfa_token": first})).await;
    let (c2, o2) = sign_in_start(&app, json!({"mfa_token": second})).await;
    assert_eq!(sign_in_finish(&app, &c1, &auth.get(&o1), Some(&first)).await.status(), 200);
    // The clone reports the same counter (1) again: the ceremony's own check passes (it knew
    // only 0), the stored counter does not.
    auth.counter = Some(0);
    assert_error(sign_in_finish(&app, &c2, &auth.get(&o2), Some(&second)).await, 401, "invalid_code").await;
}
