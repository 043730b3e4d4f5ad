//! Input an attacker controls that must not move where the service sends a browser or what it
//! connects to, nor pass for an outage: redirect URIs parsed as browsers parse them (loopback
//! URIs on any port), `jwks_uri` targets that must be public at registration and at every
//! fetch, and control characters refused where forms, queries and JSON bodies are parsed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use auth_actors::keys::KeyAlg;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, assert_error, spawn_app, spawn_app_setting};
use crate::oauth::{
    assertion_grant, client_key, oauth_error, register, register_signer, token_basic, token_endpoint, token_form,
};
use crate::oidc::{authorize, browser, page, pkce, sign_in};

/// `POST /api/v1/clients` as the admin, returning the status and the body.
async fn try_register(app: &TestApp, admin: &Session, metadata: Value) -> (u16, Value) {
    let resp = crate::oauth::try_register(app, admin, &metadata).await;
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

fn authorization_request(client_id: &str, redirect_uri: &str, challenge: &str) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "openid"),
        ("state", "st-1"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The code of a redirect to `base`.
fn code_at(resp: &reqwest::Response, base: &str) -> String {
    assert!(resp.status().is_redirection(), "a redirect, got {}", resp.status());
    let location = resp.headers()["location"].to_str().expect("ascii");
    let (to, query) = location.split_once('?').expect("a query");
    assert_eq!(to, base, "redirected to the URI the request named");
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
    params.into_iter().find(|(k, _)| k == "code").map(|(_, v)| v).expect("a code")
}

async fn exchange(
    app: &TestApp,
    id: &str,
    secret: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::Response {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    token_basic(app, id, secret, &form).await
}

#[tokio::test]
async fn a_redirect_uri_with_a_backslash_userinfo_or_fragment_is_refused_at_registration() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    for uri in [
        // A browser reads `\` as `/` and goes to evil.example over plain http.
        "http://evil.example\\@127.0.0.1/cb",
        "https://evil.example\\@app.example/cb",
        "http://evil.example@127.0.0.1/cb",
        "http://127.0.0.1.evil.example/cb",
        "https://app.example/cb#fragment",
    ] {
        for field in ["redirect_uris", "post_logout_redirect_uris"] {
            let mut metadata = json!({
                "client_name": "native",
                "grant_types": ["authorization_code"],
                "redirect_uris": ["http://127.0.0.1/cb"],
            });
            metadata[field] = json!([uri]);
            let (status, body) = try_register(&app, &admin, metadata).await;
            assert_eq!(status, 400, "{field} {uri} registered: {body}");
            assert_eq!(body["error"], "invalid_redirect_uri", "{body}");
        }
    }
}

#[tokio::test]
async fn a_loopback_redirect_uri_matches_on_any_port_and_the_exchange_needs_the_one_used() {
    // Arrange: a native app registered with a portless loopback URI, and a web URI.
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let client = register(
        &app,
        &admin,
        json!({
            "client_name": "native",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["http://127.0.0.1/cb", "https://app.example/cb"],
            "scope": "openid",
            "first_party": true,
        }),
    )
    .await;
    let user = app.new_user().await;
    let browser = browser();
    let (verifier, challenge) = pkce();
    let on_port = "http://127.0.0.1:53123/cb";

    // Act: the request names the port the app listens on.
    let (status, html) =
        page(authorize(&app, &browser, &authorization_request(&client.id, on_port, &challenge)).await).await;
    assert_eq!(status, 200, "the sign-in page for the loopback URI on port 53123: {html}");
    let signed_in = sign_in(&app, &browser, &html, &user.username, &user.password).await;
    let code = code_at(&signed_in, on_port);

    // Assert: the exchange must name the URI the request named, port included.
    let resp = exchange(&app, &client.id, &client.secret, &code, on_port, &verifier).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    let again = authorize(&app, &browser, &authorization_request(&client.id, on_port, &challenge)).await;
    let code = code_at(&again, on_port);
    let registered = exchange(&app, &client.id, &client.secret, &code, "http://127.0.0.1/cb", &verifier).await;
    assert_error(registered, 400, "invalid_grant").await;

    // Only the port is free: another path, host, query or a non-loopback port is refused.
    for uri in [
        "http://127.0.0.1:53123/cb2",
        "http://127.0.0.1:53123/cb?x=1",
        "http://127.0.0.2:53123/cb",
        "http://localhost:53123/cb",
        "https://127.0.0.1:53123/cb",
        "https://app.example:8443/cb",
    ] {
        let resp = authorize(&app, &browser, &authorization_request(&client.id, uri, &challenge)).await;
        assert!(resp.headers().get("location").is_none(), "{uri} redirected");
        let (status, html) = page(resp).await;
        assert_eq!(status, 400, "{uri}");
        assert!(html.contains("has not registered"), "{uri}: {html}");
    }
}

#[tokio::test]
async fn a_jwks_uri_at_a_loopback_private_or_link_local_address_is_refused_at_registration() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    for uri in [
        "https://127.0.0.1/jwks.json",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/jwks.json",
        "https://localhost/jwks.json",
        "https://[::ffff:127.0.0.1]/jwks.json",
        "https://[fe80::1]/jwks.json",
    ] {
        let metadata =
            json!({ "client_name": "remote", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri });
        let (status, body) = try_register(&app, &admin, metadata).await;
        assert_eq!(status, 400, "{uri} registered: {body}");
        assert_eq!(body["error"], "invalid_client_metadata", "{body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(description.contains("not a public address") || description.contains("local host"), "{description}");
    }
}

#[tokio::test]
async fn a_jwks_uri_written_around_registration_at_a_loopback_address_is_never_fetched() {
    // Arrange: http allowed (so the scheme is not what refuses it), private targets not; a
    // client whose jwks_uri was written to the database directly, at a listener that serves its
    // real keys.
    let app = spawn_app_setting("CLIENT_JWKS_ALLOW_HTTP", "true").await;
    let admin = app.admin_session().await;
    let key = client_key(KeyAlg::ES256);
    let client = register_signer(&app, &admin, "remote", &key.jwks).await;
    let (uri, connections) = crate::oauth::serve_jwks(key.jwks.to_string()).await;
    for stored in [uri.clone(), uri.replace("127.0.0.1", "localhost")] {
        app.db()
            .await
            .execute("UPDATE oauth_clients SET jwks = NULL, jwks_uri = $2 WHERE client_id = $1", &[&client.id, &stored])
            .await
            .expect("update");

        // Act: an unauthenticated assertion naming the client.
        let assertion = key.assertion(&client.id, &token_endpoint(&app), &uuid::Uuid::new_v4().to_string(), 60);
        let resp = token_form(&app, &assertion_grant(&assertion)).await;

        // Assert: refused, and the listener never saw a connection.
        oauth_error(resp, 401, "invalid_client").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(connections.load(Ordering::SeqCst), 0, "{stored} was fetched");
    }
}

#[tokio::test]
async fn a_nul_byte_in_oauth_input_is_refused_as_bad_input_never_as_an_outage() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;

    // Registration: a NUL in client_name (JSON `\u0000`) or in a member name.
    for metadata in [json!({ "client_name": "a\u{0}b" }), json!({ "client_name": "a", "x\u{0}": 1 })] {
        let (status, body) = try_register(&app, &admin, metadata).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["detail"].as_str().unwrap_or_default().contains("control character"), "{body}");
    }

    // Refresh: `scope=profile%00` on a live session bound to the client.
    let (client, session, _) = crate::oauth::client_bound_session(&app, &admin).await;
    let refresh =
        [("grant_type", "refresh_token"), ("refresh_token", session.refresh.as_str()), ("scope", "profile\0")];
    let resp = token_basic(&app, &client.id, &client.secret, &refresh).await;
    let body = oauth_error(resp, 400, "invalid_request").await;
    assert!(body["error_description"].as_str().unwrap_or_default().contains("control character"), "{body}");

    // Code exchange: `redirect_uri=…%00` with a well-formed code.
    let rp = register(
        &app,
        &admin,
        json!({
            "client_name": "web",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://app.example/cb"],
            "scope": "openid",
        }),
    )
    .await;
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let (verifier, challenge) = pkce();
    let resp = exchange(&app, &rp.id, &rp.secret, &code, "https://app.example/cb\0", &verifier).await;
    oauth_error(resp, 400, "invalid_request").await;

    // Hosted sign-in: username `a%00b`; and a NUL in the authorization request's query.
    let browser = browser();
    let request = authorization_request(&rp.id, "https://app.example/cb", &challenge);
    let (status, html) = page(authorize(&app, &browser, &request).await).await;
    assert_eq!(status, 200, "{html}");
    let (status, html) = page(sign_in(&app, &browser, &html, "a\0b", "whatever-password").await).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("control character"), "{html}");
    let mut nul_state = request.clone();
    nul_state.push(("nonce".into(), "n\0".into()));
    let (status, html) = page(authorize(&app, &browser, &nul_state).await).await;
    assert_eq!(status, 422, "{html}");

    // Any other form or query: a login form, an admin's query.
    let login = app.client.post(app.url("/api/v1/auth/login")).form(&[("username", "a\0b"), ("password", "x")]);
    assert_eq!(login.send().await.expect("send").status(), 422);
    let events = app.client.get(app.url("/api/v1/admin/events")).query(&[("type", "login\0")]);
    assert_eq!(events.bearer_auth(&admin.access).send().await.expect("send").status(), 422);
}

#[tokio::test]
async fn a_value_postgresql_refuses_is_bad_input_not_an_unavailable_database() {
    // Below the parsers, as a backstop: a NUL that reaches PostgreSQL.
    let app = spawn_app().await;
    let get = auth_actors::db::clients::Get { client_id: "a\0b".into() };
    let result = app.app.services.db.run(get).await;
    assert!(matches!(result, Err(auth_actors::db::DbError::Rejected(_))), "{result:?}");
    let answer =
        auth_service::http::ApiError::from(auth_service::flows::error::FlowError::from(result.expect_err("refused")));
    assert_eq!(answer.status(), 422, "{answer}");
}
