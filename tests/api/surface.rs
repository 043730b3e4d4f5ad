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
