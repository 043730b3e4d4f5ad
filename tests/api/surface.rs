//! The surface a browser or a raw client sees: login CSRF, the caching and sniffing headers
//! of personal data, the limit on probing usernames by renaming, and malformed `Host` headers.

use crate::helpers::*;

/// Posts a login of `user` to `path` (form or JSON) with the extra `headers`.
async fn login_with(app: &TestApp, path: &str, user: &TestUser, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.post(app.url(path));
    req = if path.ends_with("login-json") {
        req.json(&serde_json::json!({"username": user.username, "password": user.password}))
    } else {
        req.form(&[("username", user.username.as_str()), ("password", user.password.as_str())])
    };
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("send")
}

#[tokio::test]
async fn a_login_from_another_site_is_refused_and_sets_no_cookie() {
    // Arrange: the browser-facing defaults (a Secure `__Host-` cookie), and room in the login limit.
    let app = spawn_app_settings(&[("COOKIE_SECURE", "true"), ("RATE_LIMIT_LOGIN", "100/60s")]).await;
    let user = app.new_user().await;
    let foreign: [&[(&str, &str)]; 4] = [
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "cross-site")],
    ];
    for path in ["/api/v1/auth/login", "/api/v1/auth/login-json"] {
        for headers in foreign {
            // Act
            let resp = login_with(&app, path, &user, headers).await;
            // Assert: refused, and the browser is given no cookie to store.
            assert_eq!(resp.status(), 403, "{path} with {headers:?} must be refused");
            assert!(resp.headers().get("set-cookie").is_none(), "{path} with {headers:?} set a cookie");
            let body: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(body["detail"], "origin not allowed");
        }
        // The service's own origin, and a client that is not a browser, still sign in.
        let own: [&[(&str, &str)]; 3] =
            [&[("origin", "http://auth.test"), ("sec-fetch-site", "same-origin")], &[], &[("sec-fetch-site", "none")]];
        for headers in own {
            let resp = login_with(&app, path, &user, headers).await;
            assert_eq!(resp.status(), 200, "{path} with {headers:?}");
            let cookie = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(cookie.starts_with("__Host-refresh_token="), "{cookie}");
        }
    }
}

/// Asserts that `resp` may be neither stored by a cache nor sniffed into another media type.
fn assert_not_cacheable_nor_sniffable(resp: &reqwest::Response, what: &str) {
    let h = resp.headers();
    assert_eq!(h.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{what}: cache-control");
    assert_eq!(h.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"), "{what}: nosniff");
}

#[tokio::test]
async fn every_authenticated_answer_is_neither_cached_nor_sniffed() {
    use auth_service::routes::access::Access;
    use auth_service::routes::table::ROUTES;

    // Arrange
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    // Act and assert: the personal data itself.
    for path in [
        "/api/v1/sessions",
        "/api/v1/users/user/history",
        "/api/v1/user_roles/list",
        "/api/v1/user_roles/me",
        "/api/v1/admin/events",
        "/api/v1/clients",
        "/api/v1/consents",
        "/api/v1/roles/list",
    ] {
        let resp = app.get_with(path, &admin.access).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_not_cacheable_nor_sniffable(&resp, path);
    }
    // Every other route that takes a credential, whatever it answers (the admin's own
    // logout-all last, since it ends the session the others use).
    let mut routes: Vec<_> = ROUTES.iter().filter(|r| r.access() != Access::Public).collect();
    routes.sort_by_key(|r| r.template == "/api/v1/auth/logout-all");
    for route in routes {
        let path = route
            .template
            .split('/')
            .map(|s| if s.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { s.to_string() })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).expect("method");
        let resp = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(&admin.access)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=not-a-token")
            .send()
            .await
            .expect("send");
        let what = format!("{} {} ({})", route.method, route.template, resp.status());
        assert_not_cacheable_nor_sniffable(&resp, &what);
    }
    // An anonymous caller's refusal, and the documents meant to be cached keep their caching.
    let refused = app.get("/api/v1/sessions").await;
    assert_eq!(refused.status(), 401);
    assert_not_cacheable_nor_sniffable(&refused, "anonymous sessions");
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    assert_eq!(jwks.headers()["x-content-type-options"], "nosniff");
}

async fn rename(app: &TestApp, access: &str, username: &str) -> reqwest::Response {
    app.update_profile(access, serde_json::json!({ "username": username })).await
}

#[tokio::test]
async fn renaming_spends_the_signup_budget_so_names_are_probed_no_faster_than_by_signing_up() {
    // Arrange: the default signup limit (5 per minute per address); two signups spend two.
    let app = spawn_app().await;
    let victim = app.new_user().await;
    let (prober, session) = app.user_session().await;
    // Act: renames to a taken name and to a free one spend the remaining three.
    assert_eq!(rename(&app, &session.access, &victim.username).await.status(), 409);
    let renamed = unique_name("renamed");
    assert_eq!(rename(&app, &session.access, &renamed).await.status(), 200);
    assert_eq!(rename(&app, &session.access, &victim.username).await.status(), 409);
    let probe = rename(&app, &session.access, &victim.username).await;
    // Assert: the next probe is refused before the name is looked at, and so is a signup.
    assert_eq!(probe.status(), 429, "a rename past the signup budget must be refused");
    assert!(probe.headers().get("retry-after").is_some());
    let signup = app.signup(&unique_name("late"), "late@example.com", "correct horse battery").await;
    assert_eq!(signup.status(), 429);
    // A password change, and asking for the name one already has, are no probes.
    let change = serde_json::json!({"old_password": prober.password, "new_password": "another horse battery"});
    let password = app.update_profile(&session.access, change).await;
    assert_eq!(password.status(), 200);
    assert_eq!(rename(&app, &session.access, &renamed).await.status(), 200);
}

/// Sends `head` (a request head without its final empty line) on a raw connection and
/// returns the status code and the body of the answer.
async fn raw_request(app: &TestApp, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the answer arrives")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn an_http_1_1_request_without_one_host_header_is_a_json_400() {
    let app = spawn_app().await;
    for head in [
        "GET /api/v1/healthz HTTP/1.1\r\n",
        "GET /api/v1/healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
        "GET /api/v1/healthz HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n",
        "GET /api/v1/healthz HTTP/1.1\r\nHost: user@a.example\r\n",
    ] {
        let (status, body) = raw_request(&app, head).await;
        assert_eq!(status, 400, "{head:?} was answered {status}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(body["error"], "bad_request", "{body}");
    }
    // One Host (or none in HTTP/1.0, which has no such rule) is served.
    for head in ["GET /api/v1/healthz HTTP/1.1\r\nHost: a.example\r\n", "GET /api/v1/healthz HTTP/1.0\r\n"] {
        assert_eq!(raw_request(&app, head).await.0, 200, "{head:?}");
    }
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Why an instance over `keys` does not start.
async fn startup_error(keys: &std::path::Path) -> String {
    let database = fresh_database().await;
    let config = test_layers(&database, keys).build().expect("valid configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    // An instance that does start is stopped at once, so the test fails rather than hangs.
    let (started, stop) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stop.await;
    };
    let result = auth_service::startup::run(config, listener, None, shutdown, move |_| {
        let _ = started.send(());
    })
    .await;
    result.err().map(|e| e.to_string()).expect("startup must be refused")
}

#[tokio::test]
async fn a_key_directory_others_can_write_or_a_key_they_can_read_is_refused_at_startup() {
    use auth_actors::keys::KeyAlg;
    // Arrange: a directory anyone may add a key to.
    let keys = key_dir(KeyAlg::RS256);
    chmod(&keys, 0o777);
    // Act and assert
    let error = startup_error(&keys).await;
    assert!(error.contains("is writable by its group or by others (mode 0777"), "{error}");
    assert!(error.contains("JWT_KEYS_ALLOW_INSECURE_PERMISSIONS"), "{error}");
    // A private key anyone may read.
    chmod(&keys, 0o700);
    chmod(&pem_of(&keys), 0o644);
    let error = startup_error(&keys).await;
    assert!(error.contains(".pem is a private key open to its group or to others (mode 0644"), "{error}");
    // The setting loads it anyway (with a warning in the log).
    let app = spawn_app_with_keys(&keys, |l| {
        l.set("JWT_KEYS_ALLOW_INSECURE_PERMISSIONS", "true");
    })
    .await;
    assert_eq!(app.get("/.well-known/jwks.json").await.status(), 200);
    let (_, session) = app.user_session().await;
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 200);
}

#[tokio::test]
async fn a_key_directory_opened_to_others_while_serving_is_refused_at_the_next_poll() {
    use auth_actors::keys::{KeyAlg, generate_key};
    // Arrange
    let keys = key_dir(KeyAlg::RS256);
    let app = spawn_app_with_keys(&keys, |l| {
        l.set("KEYS_POLL_INTERVAL", "100ms");
    })
    .await;
    // Act: the directory becomes writable by anyone, and a key is added to it.
    chmod(&keys, 0o777);
    let added = generate_key(&keys, KeyAlg::ES256, 2048).expect("generate").kid;
    // Assert: the reload is refused, the keys loaded before still sign, readiness says why.
    app.eventually("readiness names the unsafe directory", || async {
        let ready: serde_json::Value = app.get("/api/v1/readyz").await.json().await.expect("json");
        ready["details"]["keys"].as_str().unwrap_or_default().contains("is writable by its group or by others")
    })
    .await;
    let refused = app.app.services.keys.reload().await.expect_err("what SIGHUP does is refused");
    assert!(refused.to_string().contains("not safe"), "{refused}");
    let jwks: serde_json::Value = app.get("/.well-known/jwks.json").await.json().await.expect("jwks");
    assert!(!jwks.to_string().contains(&added), "the added key is not published: {jwks}");
    let (_, session) = app.user_session().await;
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 200);
    // Closed again, the directory is read at the next poll.
    chmod(&keys, 0o700);
    app.eventually("the added key is published once the directory is safe", || async {
        let jwks: serde_json::Value = app.get("/.well-known/jwks.json").await.json().await.expect("jwks");
        jwks.to_string().contains(&added)
    })
    .await;
}

#[tokio::test]
async fn keys_generate_refuses_a_directory_others_can_write_and_makes_its_own_0700() {
    use std::os::unix::fs::PermissionsExt as _;
    // Arrange
    let open = temp_dir("open-keys");
    chmod(&open, 0o777);
    let dir_arg = open.display().to_string();
    // Act
    let refused = run_cli(&["keys", "generate", "--dir", &dir_arg], &[]).await;
    // Assert: nothing written.
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "keys generate must refuse a 0777 directory: {stderr}");
    assert!(stderr.contains("is writable by its group or by others"), "{stderr}");
    assert_eq!(std::fs::read_dir(&open).expect("dir").count(), 0);
    // Allowed, with a warning.
    let allowed =
        run_cli(&["keys", "generate", "--dir", &dir_arg], &[("JWT_KEYS_ALLOW_INSECURE_PERMISSIONS", "true".into())])
            .await;
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    assert!(String::from_utf8_lossy(&allowed.stderr).contains("warning:"));
    // A directory it creates itself is 0700, its key 0600.
    let fresh = temp_dir("fresh-keys").join("keys");
    let made = run_cli(&["keys", "generate", "--dir", &fresh.display().to_string()], &[]).await;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(std::fs::metadata(&fresh).expect("dir").permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(pem_of(&fresh)).expect("pem").permissions().mode() & 0o777, 0o600);
}
