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

#[tokio::test]
async fn every_route_that_is_not_public_refuses_an_anonymous_caller_and_a_caller_without_its_role() {
    // Arrange: a caller whose token is valid but who holds only the `user` role.
    let app = spawn_app_setting("RATE_LIMIT_ENABLED", "false").await;
    let (_user, session) = app.user_session().await;
    let mut checked = (0, 0);

    for route in ROUTES {
        if matches!(route.access, Access::Public | Access::OptionalBearer | Access::OptionalClient | Access::Browser) {
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
    // The table has routes of both kinds; if these change, the table changed.
    assert!(checked.0 >= 25 && checked.1 >= 16, "checked {checked:?}");
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
