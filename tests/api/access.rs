//! The route table's access rules, walked: every route that is not public refuses an anonymous
//! caller (401), and every route that needs a role refuses a caller without it (403), before
//! the handler runs (so whatever the body and the path say).

use auth_service::flows::authenticate::Access;
use auth_service::http::router::{ROUTES, RouteDef};

use crate::helpers::{spawn_app_setting, spawn_app_with};

/// The route's path with a fresh uuid in every placeholder.
fn concrete(route: &RouteDef) -> String {
    route
        .template
        .split('/')
        .map(|segment| if segment.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { segment.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

fn request(client: &reqwest::Client, route: &RouteDef, url: String) -> reqwest::RequestBuilder {
    let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).expect("method");
    // A body every route could read (introspection reads its form before the role check).
    client.request(method, url).header("content-type", "application/x-www-form-urlencoded").body("token=not-a-token")
}

/// The routes the dispatcher lets through without a credential: open by design, each for its
/// own reason (probes and metadata, the flows that create a credential, the hosted pages, which
/// answer with their own sign-in, and the guest view). Written out, so that weakening any other
/// route's rule to one of these fails the test below.
const OPEN: &[(&str, &str)] = &[
    ("GET", "/api/v1/healthz"),
    ("GET", "/api/v1/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("POST", "/api/v1/auth/revoke"),
    ("POST", "/api/v1/users/signup"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/login-json"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/user_roles/me"),
    ("GET", "/oauth2/authorize"),
    ("POST", "/oauth2/authorize"),
    ("POST", "/oauth2/consent"),
    ("GET", "/oauth2/logout"),
    ("POST", "/oauth2/logout"),
    ("GET", "/oauth2/assets/style.css"),
];

/// The routes that need a role (admin, or admin or service), written out for the same reason.
const NEEDS_ROLE: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/introspect"),
    ("DELETE", "/api/v1/users/{user_id}"),
    ("POST", "/api/v1/roles/create"),
    ("PUT", "/api/v1/roles/update/{role_id}"),
    ("DELETE", "/api/v1/roles/delete/{role_id}"),
    ("POST", "/api/v1/user_roles/assign"),
    ("DELETE", "/api/v1/user_roles/{user_id}/roles/{role_id}"),
    ("POST", "/api/v1/user_roles/check"),
    ("GET", "/api/v1/user_roles/list"),
    ("GET", "/api/v1/admin/events"),
    ("POST", "/oauth2/introspect"),
    ("POST", "/api/v1/clients"),
    ("GET", "/api/v1/clients"),
    ("GET", "/api/v1/clients/{client_id}"),
    ("PUT", "/api/v1/clients/{client_id}"),
    ("DELETE", "/api/v1/clients/{client_id}"),
    ("POST", "/api/v1/clients/{client_id}/rotate-secret"),
];

fn is_open(access: Access) -> bool {
    matches!(access, Access::Public | Access::OptionalBearer | Access::OptionalClient | Access::Browser)
}

#[test]
fn the_table_leaves_open_exactly_the_routes_meant_to_be_open_and_asks_a_role_exactly_where_meant() {
    let key = |r: &RouteDef| (r.method.as_str().to_string(), r.template.to_string());
    let listed = |list: &[(&str, &str)]| {
        let mut v: Vec<(String, String)> = list.iter().map(|(m, t)| (m.to_string(), t.to_string())).collect();
        v.sort();
        v
    };
    // The failure hook of test builds is open on purpose and exists only there.
    let hook = |r: &&RouteDef| r.template.starts_with("/api/v1/_test/");
    let mut open: Vec<_> = ROUTES.iter().filter(|r| is_open(r.access) && !hook(r)).map(key).collect();
    open.sort();
    assert_eq!(open, listed(OPEN), "routes without a credential check");
    let mut role: Vec<_> = ROUTES.iter().filter(|r| r.access.roles().is_some()).map(key).collect();
    role.sort();
    assert_eq!(role, listed(NEEDS_ROLE), "routes that need a role");
}

#[tokio::test]
async fn every_route_that_is_not_public_refuses_an_anonymous_caller_and_a_caller_without_its_role() {
    // Arrange: a caller whose token is valid but who holds only the `user` role.
    let app = spawn_app_setting("RATE_LIMIT_ENABLED", "false").await;
    let (_user, session) = app.user_session().await;
    let mut checked = (0, 0);

    for route in ROUTES {
        if is_open(route.access) {
            continue;
        }
        // Act and assert: no token.
        let url = app.url(&concrete(route));
        let anonymous = request(&app.client, route, url.clone()).send().await.expect("send");
        assert_eq!(anonymous.status(), 401, "{} {} without a token", route.method, route.template);
        // A route for OAuth clients challenges with HTTP Basic (RFC 6749 §5.2), the others with Bearer.
        let scheme = if route.access == Access::Client { "Basic" } else { "Bearer" };
        let challenge = anonymous.headers()["www-authenticate"].to_str().expect("ascii").to_string();
        assert!(challenge.starts_with(scheme), "{} {}: {challenge}", route.method, route.template);
        checked.0 += 1;

        if route.access.roles().is_some() {
            let denied = request(&app.client, route, url).bearer_auth(&session.access).send().await.expect("send");
            assert_eq!(denied.status(), 403, "{} {} with a user token", route.method, route.template);
            let body: serde_json::Value = denied.json().await.expect("json");
            assert_eq!(body["error"], "forbidden");
            checked.1 += 1;
        }
    }
    // Every route the lists above do not leave open was walked, and every one that needs a role.
    let protected = ROUTES.iter().filter(|r| !is_open(r.access)).count();
    assert_eq!(checked, (protected, NEEDS_ROLE.len()), "checked {checked:?}");
}

#[tokio::test]
async fn an_optional_bearer_route_serves_the_guest_to_an_anonymous_or_invalid_caller() {
    let app = spawn_app_with(|_| {}).await;
    for route in ROUTES.iter().filter(|r| r.access == Access::OptionalBearer) {
        for token in [None, Some("not-a-token")] {
            let mut req = app.client.get(app.url(&concrete(route)));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("send");
            assert_eq!(resp.status(), 200, "{} with {token:?}", route.template);
            let body: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(body["username"], "guest");
        }
    }
}
