//! The OAuth 2.1 authorization server, part 1: the client registry (RFC 7591 metadata), the
//! token endpoint with every grant and client authentication method, every RFC 6749 §5.2
//! error, secret rotation, `private_key_jwt` replay, introspection and revocation by clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auth_actors::keys::{self, KeyAlg, KeySet};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{
    Session, TestApp, assert_error, claims, spawn_app, spawn_app_setting, spawn_app_settings, temp_dir,
};

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A registered client: its id and, for a secret method, its secret.
pub(crate) struct Registered {
    pub(crate) id: String,
    pub(crate) secret: String,
    pub(crate) body: Value,
}

/// `POST /api/v1/clients` of `metadata` as the admin: the answer, whatever it is.
pub(crate) async fn try_register(app: &TestApp, admin: &Session, metadata: &Value) -> reqwest::Response {
    app.call(Method::POST, "/api/v1/clients", Some(&admin.access), Some(metadata)).await
}

pub(crate) async fn register(app: &TestApp, admin: &Session, metadata: Value) -> Registered {
    let resp = try_register(app, admin, &metadata).await;
    assert_eq!(resp.status(), 201, "register {metadata}");
    let body: Value = resp.json().await.expect("json");
    Registered {
        id: body["client_id"].as_str().expect("client_id").to_string(),
        secret: body["client_secret"].as_str().unwrap_or_default().to_string(),
        body,
    }
}

/// A client authenticated by `private_key_jwt` against the public keys `jwks` it registered.
pub(crate) async fn register_signer(app: &TestApp, admin: &Session, name: &str, jwks: &Value) -> Registered {
    let metadata = json!({ "client_name": name, "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks });
    register(app, admin, metadata).await
}

async fn service_client(app: &TestApp, admin: &Session, scope: &str) -> Registered {
    register(app, admin, json!({ "client_name": "billing", "scope": scope, "audience": "billing-api" })).await
}

/// `POST path` with `form`, as the client `id` authenticated by HTTP Basic.
pub(crate) async fn post_as_client(
    app: &TestApp,
    path: &str,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.client.post(app.url(path)).basic_auth(id, Some(secret)).form(form).send().await.expect("send")
}

/// `POST /oauth2/token` with HTTP Basic.
pub(crate) async fn token_basic(app: &TestApp, id: &str, secret: &str, form: &[(&str, &str)]) -> reqwest::Response {
    post_as_client(app, "/oauth2/token", id, secret, form).await
}

/// The form of a client-credentials grant authenticated by the client assertion `assertion`.
pub(crate) fn assertion_grant(assertion: &str) -> [(&'static str, &str); 3] {
    [("grant_type", "client_credentials"), ("client_assertion_type", JWT_BEARER), ("client_assertion", assertion)]
}

/// The access token of a successful token response.
pub(crate) async fn access_token(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("json");
    body["access_token"].as_str().expect("access_token").to_string()
}

pub(crate) async fn token_form(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client.post(app.url("/oauth2/token")).form(form).send().await.expect("send")
}

/// Asserts an RFC 6749 §5.2 error: `status`, `code`, a description, and never cached.
pub(crate) async fn oauth_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let cache_control = resp.headers().get("cache-control").cloned();
    let body = assert_error(resp, status, code).await;
    assert_eq!(cache_control.as_ref().and_then(|v| v.to_str().ok()), Some("no-store"));
    assert!(body["error_description"].is_string(), "{body}");
    body
}

/// The token endpoint as discovery names it (the public URL, not the test's own address).
pub(crate) fn token_endpoint(app: &TestApp) -> String {
    format!("{}/oauth2/token", app.app.config.tokens.public_url)
}

fn header(token: &str) -> Value {
    let h = token.split('.').next().expect("header");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json")
}

/// A client's own key pair (its private key stays here) and its public JWK Set.
pub(crate) struct ClientKey {
    pub(crate) set: KeySet,
    pub(crate) jwks: Value,
}

pub(crate) fn client_key(alg: KeyAlg) -> ClientKey {
    let dir = temp_dir("client-key");
    keys::generate_key(&dir, alg, 2048).expect("generate");
    let set = KeySet::load(&dir, None).expect("load");
    let jwks: Value = serde_json::from_slice(&set.jwks().body).expect("jwks");
    let _ = std::fs::remove_dir_all(&dir);
    ClientKey { set, jwks }
}

impl ClientKey {
    /// A client assertion (RFC 7523) for `client` with audience `aud`.
    pub(crate) fn assertion(&self, client: &str, aud: &str, jti: &str, lifetime: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({ "iss": client, "sub": client, "aud": aud, "iat": now, "exp": now + lifetime, "jti": jti });
        self.set.sign("JWT", &claims).expect("sign")
    }
}

#[tokio::test]
async fn client_credentials_with_client_secret_basic_issues_a_scoped_rfc_9068_token() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let client = service_client(&app, &admin, "invoices:read invoices:write").await;
    assert_eq!(client.body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(client.body["grant_types"], json!(["client_credentials"]));
    assert_eq!(client.body["client_secret_expires_at"], 0);
    assert_eq!(client.secret.len(), 43, "256 random bits, base64url");

    let resp = token_basic(
        &app,
        &client.id,
        &client.secret,
        &[("grant_type", "client_credentials"), ("scope", "invoices:read")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "invoices:read");
    assert!(body.get("refresh_token").is_none(), "no refresh token for client credentials");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(header(token)["typ"], "at+jwt");
    let c = claims(token);
    assert_eq!((c["sub"].as_str(), c["client_id"].as_str()), (Some(client.id.as_str()), Some(client.id.as_str())));
    assert_eq!((c["aud"].as_str(), c["scope"].as_str()), (Some("billing-api"), Some("invoices:read")));
    assert!(c.get("username").is_none() && c.get("sid").is_none());

    // No scope asked for: every scope the client may have.
    let all = token_basic(&app, &client.id, &client.secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(all.json::<Value>().await.expect("json")["scope"], "invoices:read invoices:write");

    // Introspection tells the truth about it; the user API does not take it.
    let answer = app.introspect(&admin.access, token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], client.id.as_str());
    assert_eq!(answer["scope"], "invoices:read");
    let me = app.client.get(app.url("/api/v1/sessions")).bearer_auth(token).send().await.expect("send");
    assert_eq!(me.status(), 401, "a client's token is not a user's");
}

#[tokio::test]
async fn client_secret_post_authenticates_and_a_method_other_than_the_registered_one_is_refused() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let client =
        register(&app, &admin, json!({ "client_name": "reports", "token_endpoint_auth_method": "client_secret_post" }))
            .await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client.id.as_str()),
        ("client_secret", client.secret.as_str()),
    ];
    assert_eq!(token_form(&app, &form).await.status(), 200);
    let basic = token_basic(&app, &client.id, &client.secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(basic.headers()["www-authenticate"].to_str().expect("ascii").split(' ').next(), Some("Basic"));
    oauth_error(basic, 401, "invalid_client").await;
}

#[tokio::test]
async fn private_key_jwt_authenticates_and_a_replayed_assertion_is_refused() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    for alg in [KeyAlg::RS256, KeyAlg::ES256] {
        let key = client_key(alg);
        let client = register_signer(&app, &admin, "signer", &key.jwks).await;
        assert!(client.body.get("client_secret").is_none(), "no secret for private_key_jwt");
        let assertion = key.assertion(&client.id, &token_endpoint(&app), &uuid::Uuid::new_v4().to_string(), 60);
        let form = assertion_grant(&assertion);
        let first = token_form(&app, &form).await;
        assert_eq!(first.status(), 200, "{alg:?}: {}", first.text().await.unwrap_or_default());
        oauth_error(token_form(&app, &form).await, 401, "invalid_client").await;

        // The issuer as audience is accepted too; a long-lived assertion and another client's are not.
        let issuer = app.app.config.tokens.issuer.clone();
        let ok = key.assertion(&client.id, &issuer, &uuid::Uuid::new_v4().to_string(), 60);
        assert_eq!(token_form(&app, &assertion_grant(&ok)).await.status(), 200);
        let long = key.assertion(&client.id, &issuer, &uuid::Uuid::new_v4().to_string(), 7200);
        oauth_error(token_form(&app, &assertion_grant(&long)).await, 401, "invalid_client").await;
        let stranger = client_key(alg).assertion(&client.id, &issuer, &uuid::Uuid::new_v4().to_string(), 60);
        oauth_error(token_form(&app, &assertion_grant(&stranger)).await, 401, "invalid_client").await;
    }
    let replays: i64 = app
        .db_value("SELECT count(*) FROM security_events WHERE event_type = 'client_auth_failed' AND detail->>'reason' = 'assertion_replayed'", &[])
        .await;
    assert_eq!(replays, 2);
}

/// Serves `body` to every request on a loopback port (a client's published JWK Set): its URI,
/// and how many connections it has accepted.
pub(crate) async fn serve_jwks(body: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/jwks.json"), connections)
}

#[tokio::test]
async fn private_key_jwt_with_a_jwks_uri_uses_the_published_keys() {
    let app = spawn_app_settings(&[("CLIENT_JWKS_ALLOW_HTTP", "true"), ("CLIENT_JWKS_ALLOW_PRIVATE", "true")]).await;
    let admin = app.admin_session().await;
    let key = client_key(KeyAlg::ES256);
    let (uri, _) = serve_jwks(key.jwks.to_string()).await;
    let client = register(
        &app,
        &admin,
        json!({ "client_name": "remote", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri }),
    )
    .await;
    let assertion = key.assertion(&client.id, &token_endpoint(&app), "one", 60);
    assert_eq!(token_form(&app, &assertion_grant(&assertion)).await.status(), 200);
}

#[tokio::test]
async fn every_rfc_6749_error_is_answered_as_section_5_2_says() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let client = service_client(&app, &admin, "read").await;
    let (id, secret) = (client.id.as_str(), client.secret.as_str());

    oauth_error(token_basic(&app, id, secret, &[]).await, 400, "invalid_request").await;
    let twice = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=read&scope=read")
        .send()
        .await
        .expect("send");
    oauth_error(twice, 400, "invalid_request").await;
    let wrong = token_basic(&app, id, "not the secret", &[("grant_type", "client_credentials")]).await;
    assert!(wrong.headers()["www-authenticate"].to_str().expect("ascii").starts_with("Basic realm="));
    oauth_error(wrong, 401, "invalid_client").await;
    oauth_error(
        token_basic(&app, "no-such-client", secret, &[("grant_type", "client_credentials")]).await,
        401,
        "invalid_client",
    )
    .await;
    oauth_error(token_form(&app, &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
    oauth_error(
        token_basic(&app, id, secret, &[("grant_type", "password"), ("username", "a")]).await,
        400,
        "unsupported_grant_type",
    )
    .await;
    oauth_error(
        token_basic(&app, id, secret, &[("grant_type", "refresh_token"), ("refresh_token", "x")]).await,
        400,
        "unauthorized_client",
    )
    .await;
    oauth_error(
        token_basic(&app, id, secret, &[("grant_type", "client_credentials"), ("scope", "write")]).await,
        400,
        "invalid_scope",
    )
    .await;
    let refresher =
        register(&app, &admin, json!({ "client_name": "r", "grant_types": ["refresh_token", "client_credentials"] }))
            .await;
    let bad = [("grant_type", "refresh_token"), ("refresh_token", "AAAA")];
    oauth_error(token_basic(&app, &refresher.id, &refresher.secret, &bad).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_rotated_secret_works_for_its_overlap_and_then_stops() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let client = service_client(&app, &admin, "").await;
    let rotate = |overlap: u64| {
        app.client
            .post(app.url(&format!("/api/v1/clients/{}/rotate-secret", client.id)))
            .bearer_auth(&admin.access)
            .json(&json!({ "overlap_seconds": overlap }))
            .send()
    };
    // An overlap past 30 days is refused before anything changes (it once overflowed the
    // database's interval and answered 503).
    let too_long = rotate(10_000_000_000_000_001).await.expect("send");
    assert_eq!(too_long.status(), 422);
    assert_eq!(too_long.json::<Value>().await.expect("json")["error"], "invalid_field");
    assert_eq!(
        token_basic(&app, &client.id, &client.secret, &[("grant_type", "client_credentials")]).await.status(),
        200
    );
    let resp = rotate(2).await.expect("send");
    assert_eq!(resp.status(), 200);
    let second = resp.json::<Value>().await.expect("json")["client_secret"].as_str().expect("secret").to_string();
    let grant = [("grant_type", "client_credentials")];
    assert_eq!(token_basic(&app, &client.id, &client.secret, &grant).await.status(), 200, "old, inside the overlap");
    assert_eq!(token_basic(&app, &client.id, &second, &grant).await.status(), 200, "new");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    oauth_error(token_basic(&app, &client.id, &client.secret, &grant).await, 401, "invalid_client").await;
    let third = rotate(0).await.expect("send").json::<Value>().await.expect("json")["client_secret"]
        .as_str()
        .expect("s")
        .to_string();
    oauth_error(token_basic(&app, &client.id, &second, &grant).await, 401, "invalid_client").await;
    assert_eq!(token_basic(&app, &client.id, &third, &grant).await.status(), 200);
}

#[tokio::test]
async fn a_deleted_client_gets_no_tokens_and_its_tokens_turn_inactive() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let client = service_client(&app, &admin, "").await;
    let grant = [("grant_type", "client_credentials")];
    let token = access_token(token_basic(&app, &client.id, &client.secret, &grant).await).await;
    assert_eq!(app.introspect(&admin.access, &token).await["active"], true);
    let del = app.delete_with(&format!("/api/v1/clients/{}", client.id), &admin.access).await;
    assert_eq!(del.status(), 204);
    oauth_error(token_basic(&app, &client.id, &client.secret, &grant).await, 401, "invalid_client").await;
    assert_eq!(app.introspect(&admin.access, &token).await, json!({ "active": false }));
}

#[tokio::test]
async fn resource_servers_introspect_as_clients_and_a_client_revokes_only_its_own_tokens() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let a = service_client(&app, &admin, "").await;
    let b = service_client(&app, &admin, "").await;
    let grant = [("grant_type", "client_credentials")];
    let token_of = |c: &Registered| {
        let (id, secret) = (c.id.clone(), c.secret.clone());
        let app = &app;
        async move { access_token(token_basic(app, &id, &secret, &grant).await).await }
    };
    let (token_a, user) = (token_of(&a).await, app.user_session().await.1);
    // `POST path` of `token` as the client `c`: an introspection, or a revocation.
    let send_token = |c: &Registered, path: &'static str, token: String| {
        let (id, secret) = (c.id.clone(), c.secret.clone());
        let app = &app;
        async move { post_as_client(app, path, &id, &secret, &[("token", &token)]).await }
    };
    for path in ["/oauth2/introspect", "/api/v1/auth/introspect"] {
        let resp = send_token(&b, path, token_a.clone()).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.json::<Value>().await.expect("json")["client_id"], a.id.as_str());
        // A user's token for the service's own API is not meant for B: B learns nothing of it.
        let resp = send_token(&b, path, user.access.clone()).await;
        assert_eq!(resp.json::<Value>().await.expect("json"), json!({ "active": false }), "{path}");
        // Nor of a token issued to a client for another audience.
        let other = register(&app, &admin, json!({ "client_name": "crm", "audience": "crm-api" })).await;
        let resp = send_token(&b, path, token_of(&other).await).await;
        assert_eq!(resp.json::<Value>().await.expect("json"), json!({ "active": false }), "{path}");
    }
    // An admin still sees every token.
    assert_eq!(app.introspect(&admin.access, &user.access).await["active"], true);
    let anonymous =
        app.client.post(app.url("/oauth2/introspect")).form(&[("token", &token_a)]).send().await.expect("send");
    assert_eq!(anonymous.status(), 401);
    let wrong = post_as_client(&app, "/oauth2/introspect", &b.id, "x", &[("token", &token_a)]).await;
    oauth_error(wrong, 401, "invalid_client").await;

    // B may not revoke A's token (nor a user's first-party token); A may.
    let revoke = |c: &Registered, token: String| send_token(c, "/oauth2/revoke", token);
    oauth_error(revoke(&b, token_a.clone()).await, 400, "unauthorized_client").await;
    oauth_error(revoke(&b, user.access.clone()).await, 400, "unauthorized_client").await;
    oauth_error(revoke(&b, user.refresh.clone()).await, 400, "unauthorized_client").await;
    assert_eq!(app.introspect(&admin.access, &token_a).await["active"], true, "B's attempt changed nothing");
    assert_eq!(revoke(&a, token_a.clone()).await.status(), 200);
    assert_eq!(app.introspect(&admin.access, &token_a).await, json!({ "active": false }));
    assert_eq!(revoke(&a, "not-a-token".into()).await.status(), 200, "RFC 7009: unknown tokens are 200");
    let anonymous = app.client.post(app.url("/oauth2/revoke")).form(&[("token", &token_a)]).send().await.expect("send");
    oauth_error(anonymous, 401, "invalid_client").await;
}

fn refreshing_client() -> Value {
    json!({ "client_name": "web", "grant_types": ["refresh_token"], "scope": "profile orders" })
}

/// A client that may refresh, and a user's session bound to it with the scope `profile orders`
/// (until the authorization-code grant issues them, a session is bound to a client here).
pub(crate) async fn client_bound_session(app: &TestApp, admin: &Session) -> (Registered, Session, uuid::Uuid) {
    let client = register(app, admin, refreshing_client()).await;
    let (_, session) = app.user_session().await;
    let sid = claims(&session.access)["sid"].as_str().expect("sid").parse::<uuid::Uuid>().expect("uuid");
    app.db()
        .await
        .execute(
            "UPDATE refresh_families SET client_id = $2, scope = 'profile orders' WHERE id = $1",
            &[&sid, &client.id],
        )
        .await
        .expect("bind");
    (client, session, sid)
}

#[tokio::test]
async fn a_retry_within_the_grace_window_cannot_widen_the_scope_either() {
    let app = spawn_app_setting("REFRESH_REUSE_GRACE", "30s").await;
    let admin = app.admin_session().await;
    let (a, session, _) = client_bound_session(&app, &admin).await;
    let narrow = [("grant_type", "refresh_token"), ("refresh_token", session.refresh.as_str()), ("scope", "profile")];
    let resp = token_basic(&app, &a.id, &a.secret, &narrow).await;
    assert_eq!(resp.status(), 200);
    let first: Value = resp.json().await.expect("json");

    let wider =
        [("grant_type", "refresh_token"), ("refresh_token", session.refresh.as_str()), ("scope", "profile admin")];
    oauth_error(token_basic(&app, &a.id, &a.secret, &wider).await, 400, "invalid_scope").await;
    // The refused retry was not counted and revoked nothing: a retry within the window still
    // gets the same successor.
    let retry = [("grant_type", "refresh_token"), ("refresh_token", session.refresh.as_str())];
    let resp = token_basic(&app, &a.id, &a.secret, &retry).await;
    assert_eq!(resp.status(), 200, "the retry within the grace window");
    let again: Value = resp.json().await.expect("json");
    assert_eq!(again["refresh_token"], first["refresh_token"]);
    assert_eq!(again["scope"], "profile orders");
    assert_eq!(app.security_events("refresh_retried").await, 1, "only the retry that was answered is counted");
}

#[tokio::test]
async fn the_refresh_token_grant_rotates_a_session_bound_to_its_client_only() {
    let app = spawn_app_setting("REFRESH_REUSE_GRACE", "0s").await;
    let admin = app.admin_session().await;
    let b = register(&app, &admin, refreshing_client()).await;
    let (a, session, sid) = client_bound_session(&app, &admin).await;

    let grant = [("grant_type", "refresh_token"), ("refresh_token", session.refresh.as_str()), ("scope", "profile")];
    oauth_error(token_basic(&app, &b.id, &b.secret, &grant).await, 400, "invalid_grant").await;
    assert_eq!(app.refresh(&session.refresh).await.status(), 401, "not a first-party session any more");
    let resp = token_basic(&app, &a.id, &a.secret, &grant).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["scope"], "profile");
    let c = claims(body["access_token"].as_str().expect("token"));
    assert_eq!((c["client_id"].as_str(), c["sid"].as_str()), (Some(a.id.as_str()), Some(sid.to_string().as_str())));
    let successor = body["refresh_token"].as_str().expect("rotated").to_string();
    let wider = [("grant_type", "refresh_token"), ("refresh_token", successor.as_str()), ("scope", "profile admin")];
    oauth_error(token_basic(&app, &a.id, &a.secret, &wider).await, 400, "invalid_scope").await;
    // The refused refresh wrote nothing: the successor still rotates, to the session's scope.
    let next = [("grant_type", "refresh_token"), ("refresh_token", successor.as_str())];
    let resp = token_basic(&app, &a.id, &a.secret, &next).await;
    assert_eq!(resp.status(), 200, "a refused scope does not use the token up");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["scope"], "profile orders");
    let latest = body["refresh_token"].as_str().expect("rotated").to_string();
    // Replaying the first token is reuse: the session is revoked, the newest token with it.
    oauth_error(token_basic(&app, &a.id, &a.secret, &grant).await, 400, "invalid_grant").await;
    let reused = [("grant_type", "refresh_token"), ("refresh_token", latest.as_str())];
    oauth_error(token_basic(&app, &a.id, &a.secret, &reused).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn parallel_wrong_secrets_cannot_exceed_the_client_threshold_and_then_lock_the_client() {
    let app = spawn_app_settings(&[("CLIENT_AUTH_THRESHOLD", "5"), ("RATE_LIMIT_TOKEN", "1000/60s")]).await;
    let admin = app.admin_session().await;
    let client = service_client(&app, &admin, "").await;
    let guesses =
        (0..30).map(|i| {
            let (app, id) = (&app, client.id.clone());
            async move {
                token_basic(app, &id, &format!("guess {i}"), &[("grant_type", "client_credentials")]).await.status()
            }
        });
    let statuses = futures::future::join_all(guesses).await;
    let refused = statuses.iter().filter(|s| s.as_u16() == 429).count();
    let checked = statuses.iter().filter(|s| s.as_u16() == 401).count();
    assert!(checked <= 5 && checked + refused == 30, "checked {checked}, refused {refused}");
    let right = token_basic(&app, &client.id, &client.secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(right.status(), 429, "locked: even the right secret is refused");
    assert!(right.headers().contains_key("retry-after"));
    assert_eq!(app.security_events("client_auth_failed").await, checked as i64);
    assert_eq!(app.security_events("client_lockout").await, 1);
}

#[tokio::test]
async fn registration_speaks_rfc_7591_and_changes_reach_the_token_endpoint_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let bad =
        try_register(&app, &admin, &json!({ "client_name": "x", "redirect_uris": ["https://app.example/*"] })).await;
    oauth_error(bad, 400, "invalid_redirect_uri").await;
    for body in [
        json!({ "client_name": "x", "grant_types": ["implicit"] }),
        json!({ "client_name": "x", "token_endpoint_auth_method": "private_key_jwt" }),
        json!({ "grant_types": ["client_credentials"] }),
    ] {
        oauth_error(try_register(&app, &admin, &body).await, 400, "invalid_client_metadata").await;
    }
    let client = register(
        &app,
        &admin,
        json!({ "client_name": "api", "scope": "a", "redirect_uris": ["https://app.example/cb"], "software_id": "ignored" }),
    )
    .await;
    let shown: Value =
        app.get_with(&format!("/api/v1/clients/{}", client.id), &admin.access).await.json().await.expect("json");
    assert_eq!(shown["redirect_uris"], json!(["https://app.example/cb"]));
    assert!(shown.get("client_secret").is_none(), "a secret is shown once");
    let listed: Value = app.get_with("/api/v1/clients", &admin.access).await.json().await.expect("json");
    assert!(listed.as_array().expect("array").iter().any(|c| c["client_id"] == client.id.as_str()));

    let grant = [("grant_type", "client_credentials"), ("scope", "b")];
    oauth_error(token_basic(&app, &client.id, &client.secret, &grant).await, 400, "invalid_scope").await;
    let path = format!("/api/v1/clients/{}", client.id);
    let put =
        app.call(Method::PUT, &path, Some(&admin.access), Some(&json!({ "client_name": "api", "scope": "a b" }))).await;
    assert_eq!(put.status(), 200);
    assert_eq!(
        token_basic(&app, &client.id, &client.secret, &grant).await.status(),
        200,
        "the cached client was dropped"
    );
    let events: Value =
        app.get_with("/api/v1/admin/events?type=client_updated", &admin.access).await.json().await.expect("json");
    assert_eq!(events["total"], 1);

    // Discovery tells the truth.
    let (status, meta) = app.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    assert_eq!(meta["token_endpoint"], "http://auth.test/oauth2/token");
    assert_eq!(meta["grant_types_supported"], json!(["authorization_code", "client_credentials", "refresh_token"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
    );
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "private_key_jwt"]),
        "a public client cannot introspect"
    );
    assert_eq!(meta["scopes_supported"], json!(["a", "b", "email", "offline_access", "openid", "profile", "roles"]));
    assert!(meta["introspection_endpoint"].as_str().expect("url").ends_with("/oauth2/introspect"));
}

#[tokio::test]
async fn the_clients_command_registers_rotates_and_deletes_and_running_instances_follow() {
    let app = spawn_app().await;
    let env = [
        ("DATABASE_URL", crate::helpers::database_url(&app.database)),
        ("REDIS_URL", crate::helpers::REDIS_URL.to_string()),
        ("REDIS_KEY_PREFIX", app.app.config.redis_keys.prefix().to_string()),
    ];
    let cli = |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::helpers::run_cli(&args, env).await
        }
    };
    let stdout = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let created =
        stdout(cli(vec!["clients", "create", "--name", "cli", "--scope", "x y", "--audience", "cli-api"]).await);
    let created: Value = serde_json::from_str(&created).expect("json");
    let id = created["client_id"].as_str().expect("id").to_string();
    let secret = created["client_secret"].as_str().expect("secret").to_string();
    let grant = [("grant_type", "client_credentials")];
    assert_eq!(token_basic(&app, &id, &secret, &grant).await.status(), 200);
    assert!(stdout(cli(vec!["clients", "list"]).await).contains(&id));

    let rotated = stdout(cli(vec!["clients", "rotate-secret", &id, "--overlap", "0s"]).await);
    let rotated: Value = serde_json::from_str(&rotated).expect("json");
    oauth_error(token_basic(&app, &id, &secret, &grant).await, 401, "invalid_client").await;
    let new_secret = rotated["client_secret"].as_str().expect("secret");
    assert_eq!(
        token_basic(&app, &id, new_secret, &grant).await.status(),
        200,
        "the instance dropped its cached client"
    );

    stdout(cli(vec!["clients", "delete", &id]).await);
    oauth_error(token_basic(&app, &id, new_secret, &grant).await, 401, "invalid_client").await;
    let refused = cli(vec!["clients", "create", "--name", "x", "--grant-type", "password"]).await;
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("not supported"));
}

#[tokio::test]
async fn the_client_limit_counts_token_requests_only_and_refusals_are_counted_by_grant_and_outcome() {
    let app = spawn_app_settings(&[("RATE_LIMIT_CLIENT", "3/60s"), ("RATE_LIMIT_TOKEN", "1000/60s")]).await;
    let admin = app.admin_session().await;
    let client = service_client(&app, &admin, "").await;
    let grant = [("grant_type", "client_credentials")];
    let mut token = String::new();
    for _ in 0..3 {
        let resp = token_basic(&app, &client.id, &client.secret, &grant).await;
        assert_eq!(resp.status(), 200);
        token = access_token(resp).await;
    }
    let resp = token_basic(&app, &client.id, &client.secret, &grant).await;
    assert_eq!(resp.status(), 429, "the fourth token request of the window");
    assert!(resp.headers().contains_key("retry-after"));
    // Introspection and revocation as the same client are not token requests.
    for _ in 0..5 {
        let resp = post_as_client(&app, "/oauth2/introspect", &client.id, &client.secret, &[("token", &token)]).await;
        assert_eq!(resp.status(), 200, "a resource server is not limited by its token requests");
    }
    let wrong = token_basic(&app, &client.id, "not the secret", &grant).await;
    assert_eq!(wrong.status(), 429, "still over the limit: refused before the secret is checked");
    let other = service_client(&app, &admin, "").await;
    oauth_error(token_basic(&app, &other.id, "not the secret", &grant).await, 401, "invalid_client").await;

    let count = |outcome: &str| {
        let app = &app;
        let labels =
            format!(r#"auth_oauth_token_requests_total{{grant_type="client_credentials",outcome="{outcome}"}}"#);
        async move { app.metric(&labels).await }
    };
    assert_eq!(count("issued").await, 3.0);
    assert_eq!(count("throttled").await, 2.0);
    assert_eq!(count("invalid_client").await, 1.0);
}
