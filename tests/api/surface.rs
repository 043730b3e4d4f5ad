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
    let app = spawn_app_with(|l| {
        l.set("COOKIE_SECURE", "true").set("RATE_LIMIT_LOGIN", "100/60s");
    })
    .await;
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
    use auth_service::flows::authenticate::Access;
    use auth_service::http::router::ROUTES;

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
    let mut routes: Vec<_> = ROUTES.iter().filter(|r| r.access != Access::Public).collect();
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
    app.client
        .patch(app.url("/api/v1/users/auth/update"))
        .bearer_auth(access)
        .json(&serde_json::json!({ "username": username }))
        .send()
        .await
        .expect("send")
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
    let password = app
        .client
        .patch(app.url("/api/v1/users/auth/update"))
        .bearer_auth(&session.access)
        .json(&serde_json::json!({"old_password": prober.password, "new_password": "another horse battery"}))
        .send()
        .await
        .expect("send");
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
