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
