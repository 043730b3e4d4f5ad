//! What a token issued through `/oauth2/token` may do, and how long its revocation holds: the
//! audience rules of SPEC §7 beyond the access walk (see `access.rs`), revocation markers that
//! outlive the longest token a client may be issued, and a client lockout that a stranger who
//! knows the client id cannot trigger.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, claims, redis_connection, spawn_app, spawn_app_settings};
use crate::oauth::{access_token, register, token_basic};
use crate::oidc;

const TOKEN: &str = "/oauth2/token";

/// `POST path` with HTTP Basic, as seen from `address` (through a trusted proxy).
async fn post_from(
    app: &TestApp,
    address: &str,
    path: &str,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("x-forwarded-for", address)
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn a_revocation_holds_until_the_longest_lived_token_a_client_may_be_issued_has_expired() {
    // Arrange: first-party tokens live 2 s, an app's tokens a minute; a revocation marker sized
    // for the former would be gone long before the app's token expires.
    let app =
        spawn_app_settings(&[("ACCESS_TOKEN_TTL", "2s"), ("CLOCK_SKEW", "0s"), ("RATE_LIMIT_ENABLED", "false")]).await;
    let user = app.new_user().await;
    let admin = app.admin_session().await;
    let rp = oidc::register(&app, &admin, json!({ "access_token_ttl": 60 })).await;
    let (verifier, challenge) = oidc::pkce();
    let code = oidc::code_for(&app, &oidc::browser(), &rp, &user, &challenge).await;
    let token = access_token(oidc::exchange(&app, &rp, &code["code"], &verifier).await).await;
    assert_eq!(oidc::userinfo(&app, &token).await.status(), 200);

    // Act: the user signs out everywhere.
    let session = app.login(&user).await;
    assert_eq!(app.post_with("/api/v1/auth/logout-all", &session.access).await.status(), 200);
    assert_eq!(oidc::userinfo(&app, &token).await.status(), 401, "revoked at once");

    // Assert: well past ACCESS_TOKEN_TTL + skew, the app's token is still refused.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(oidc::userinfo(&app, &token).await.status(), 401, "the revocation outlived ACCESS_TOKEN_TTL");
    let key = app.app.config.redis_keys.not_before(user.id.parse().expect("uuid"));
    let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut redis_connection().await).await.expect("pttl");
    assert!(ttl > 86_000_000, "the logout-all marker lives a day and more: {ttl} ms");
}

#[tokio::test]
async fn a_stranger_who_knows_a_client_id_cannot_lock_the_client_out() {
    // Arrange: a client, and limits on with a small threshold.
    let app = spawn_app_settings(&[
        ("CLIENT_AUTH_THRESHOLD", "5"),
        ("RATE_LIMIT_TOKEN", "1000/60s"),
        ("TRUST_PROXY_HEADERS", "true"),
        ("TRUSTED_PROXY_IPS", "127.0.0.1/32"),
    ])
    .await;
    let admin = app.admin_session().await;
    let client = register(&app, &admin, json!({ "client_name": "billing" })).await;
    let grant = [("grant_type", "client_credentials")];

    // Act: a stranger sends wrong secrets, and a bare client id, until locked out.
    let stranger = "203.0.113.66";
    for i in 0..5 {
        let resp = post_from(&app, stranger, TOKEN, &client.id, &format!("guess {i}"), &grant).await;
        assert_eq!(resp.status(), 401, "guess {i}");
    }
    let bare = app
        .client
        .post(app.url("/oauth2/token"))
        .header("x-forwarded-for", stranger)
        .form(&[("grant_type", "client_credentials"), ("client_id", client.id.as_str())])
        .send()
        .await
        .expect("send");
    assert_eq!(bare.status(), 429, "the stranger's address is locked");

    // Assert: the real client, from its own address, still gets tokens and introspects.
    let own = "198.51.100.2";
    let resp = post_from(&app, own, TOKEN, &client.id, &client.secret, &grant).await;
    assert_eq!(resp.status(), 200, "the client is not locked out by a stranger");
    let token = access_token(resp).await;
    let resp = post_from(&app, own, "/oauth2/introspect", &client.id, &client.secret, &[("token", &token)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.expect("json")["active"], true);
    // The right secret from the stranger's address is refused while its lock lasts.
    let resp = post_from(&app, stranger, TOKEN, &client.id, &client.secret, &grant).await;
    assert_eq!(resp.status(), 429);
}

#[tokio::test]
async fn a_resource_outside_the_clients_registration_is_invalid_target() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let meta = json!({ "client_name": "billing", "audience": "https://billing.example" });
    let client = register(&app, &admin, meta).await;
    let ask = |resource: &'static str| {
        let app = &app;
        let (id, secret) = (client.id.clone(), client.secret.clone());
        async move { token_basic(app, &id, &secret, &[("grant_type", "client_credentials"), ("resource", resource)]).await }
    };
    let ok = ask("https://billing.example").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(claims(&access_token(ok).await)["aud"], "https://billing.example");
    assert_error(ask("test-audience").await, 400, "invalid_target").await;
}
