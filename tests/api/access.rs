//! The route table's access rules, walked: every route that is not public refuses an anonymous
//! caller (401), and every route that needs a role refuses a caller without it (403), before
//! the handler runs (so whatever the body and the path say).

use auth_service::routes::access::Access;
use auth_service::routes::table::{ROUTES, RouteDef};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, TestUser, assert_error, claims, spawn_app, spawn_app_setting};
use crate::oauth::{Registered, access_token, try_register};
use crate::oidc;

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
    ("GET", "/oauth2/assets/{asset}"),
    // A mailed link's token is the credential: its account is whoever the token was issued to.
    ("POST", "/api/v1/auth/email/verify"),
    ("POST", "/api/v1/auth/email/change/confirm"),
    ("GET", "/account/verify-email"),
    ("POST", "/account/verify-email"),
    ("GET", "/account/confirm-email-change"),
    ("POST", "/account/confirm-email-change"),
    ("POST", "/api/v1/auth/password/forgot"),
    ("POST", "/api/v1/auth/password/reset"),
    ("GET", "/account/sign-up"),
    ("POST", "/account/sign-up"),
    ("GET", "/account/forgot-password"),
    ("POST", "/account/forgot-password"),
    ("GET", "/account/reset-password"),
    ("POST", "/account/reset-password"),
    // Signing in with a passkey: the assertion is the credential.
    ("POST", "/api/v1/auth/webauthn/start"),
    ("POST", "/api/v1/auth/webauthn/finish"),
    ("POST", "/api/v1/auth/mfa"),
    // The second step of a hosted sign-in: the pending step's mfa_token and the CSRF token.
    ("POST", "/oauth2/authorize/mfa"),
    ("POST", "/oauth2/authorize/passkey/start"),
    ("POST", "/oauth2/authorize/passkey"),
    // The security page: each handler needs the browser session (a page or JSON 401 without).
    ("GET", "/account/security"),
    ("POST", "/account/security/sign-in"),
    ("POST", "/account/security/totp"),
    ("POST", "/account/security/totp/confirm"),
    ("POST", "/account/security/totp/remove"),
    ("POST", "/account/security/passkeys/start"),
    ("POST", "/account/security/passkeys"),
    ("POST", "/account/security/passkeys/delete"),
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
    ("DELETE", "/api/v1/users/{user_id}/mfa"),
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
    let mut open: Vec<_> = ROUTES.iter().filter(|r| is_open(r.access()) && !hook(r)).map(key).collect();
    open.sort();
    assert_eq!(open, listed(OPEN), "routes without a credential check");
    let mut role: Vec<_> = ROUTES.iter().filter(|r| r.access().roles().is_some()).map(key).collect();
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
        if is_open(route.access()) {
            continue;
        }
        // Act and assert: no token.
        let url = app.url(&concrete(route));
        let anonymous = request(&app.client, route, url.clone()).send().await.expect("send");
        assert_eq!(anonymous.status(), 401, "{} {} without a token", route.method, route.template);
        // A route for OAuth clients challenges with HTTP Basic (RFC 6749 §5.2), the others with Bearer.
        let scheme = if route.access() == Access::Client { "Basic" } else { "Bearer" };
        let challenge = anonymous.headers()["www-authenticate"].to_str().expect("ascii").to_string();
        assert!(challenge.starts_with(scheme), "{} {}: {challenge}", route.method, route.template);
        checked.0 += 1;

        if route.access().roles().is_some() {
            let denied = request(&app.client, route, url).bearer_auth(&session.access).send().await.expect("send");
            assert_eq!(denied.status(), 403, "{} {} with a user token", route.method, route.template);
            assert_error(denied, 403, "forbidden").await;
            checked.1 += 1;
        }
    }
    // Every route the lists above do not leave open was walked, and every one that needs a role.
    let protected = ROUTES.iter().filter(|r| !is_open(r.access())).count();
    assert_eq!(checked, (protected, NEEDS_ROLE.len()), "checked {checked:?}");
}

#[tokio::test]
async fn an_optional_bearer_route_serves_the_guest_to_an_anonymous_or_invalid_caller() {
    let app = spawn_app().await;
    for route in ROUTES.iter().filter(|r| r.access() == Access::OptionalBearer) {
        for token in [None, Some("not-a-token")] {
            let resp = app.call(Method::GET, &concrete(route), token, None).await;
            assert_eq!(resp.status(), 200, "{} with {token:?}", route.template);
            let body: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(body["username"], "guest");
        }
    }
}

/// The routes of the service's own API that need a credential (the failure hook of test builds
/// aside).
fn api_routes() -> impl Iterator<Item = &'static RouteDef> {
    ROUTES.iter().filter(|r| r.template.starts_with("/api/v1/") && !r.template.starts_with("/api/v1/_test/"))
}

/// An access token a user got through the browser flow for `rp` (signed in, consented if asked).
async fn code_flow_token(app: &TestApp, rp: &Registered, user: &TestUser) -> String {
    let (verifier, challenge) = oidc::pkce();
    let code = oidc::code_for(app, &oidc::browser(), rp, user, &challenge).await;
    let resp = oidc::exchange(app, rp, &code["code"], &verifier).await;
    assert_eq!(resp.status(), 200, "the code exchange");
    access_token(resp).await
}

#[tokio::test]
async fn a_third_party_apps_token_acts_on_no_api_route_even_when_an_admin_consented() {
    // Arrange: an admin signs in to a third-party app and allows it everything it asks for.
    let app = spawn_app_setting("RATE_LIMIT_ENABLED", "false").await;
    let user = app.new_user().await;
    let admin = app.admin_session_for(&user).await;
    let rp = oidc::register(&app, &admin, json!({ "first_party": false })).await;
    let token = code_flow_token(&app, &rp, &user).await;
    let claims = claims(&token);
    assert_eq!(claims["aud"], rp.id.as_str(), "a third-party token names its own client as audience: {claims}");

    // Act and assert: every route of the API that needs a credential refuses it, the admin
    // routes included; the guest view treats it as no token; userinfo serves it.
    let mut refused = 0;
    for route in api_routes() {
        let resp =
            request(&app.client, route, app.url(&concrete(route))).bearer_auth(&token).send().await.expect("send");
        match route.access() {
            Access::OptionalBearer => {
                assert_eq!(resp.status(), 200, "{}", route.template);
                let body: serde_json::Value = resp.json().await.expect("json");
                assert_eq!(body["username"], "guest", "{} serves the guest", route.template);
            }
            access if is_open(access) => {}
            _ => {
                assert_eq!(resp.status(), 401, "{} {} with a third-party token", route.method, route.template);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, api_routes().filter(|r| !is_open(r.access())).count());
    assert!(refused >= 24, "walked {refused} routes");
    assert_eq!(oidc::userinfo(&app, &token).await.status(), 200, "userinfo is what a consent to openid allows");
}

#[tokio::test]
async fn a_first_party_client_registered_for_the_api_acts_as_its_user_there_and_only_while_registered_so() {
    let app = spawn_app_setting("RATE_LIMIT_ENABLED", "false").await;
    let user = app.new_user().await;
    let admin = app.admin_session_for(&user).await;
    let api = app.app.config.tokens.audience.clone();

    // Only a first-party client may be registered for the API's audience.
    let third_party = json!({ "client_name": "x", "grant_types": ["authorization_code"],
        "redirect_uris": [oidc::REDIRECT], "scope": "openid", "audience": api });
    let resp = try_register(&app, &admin, &third_party).await;
    assert_eq!(resp.status(), 400, "a third-party client cannot be registered for the API");
    assert_error(resp, 400, "invalid_client_metadata").await;

    // A first-party client without that audience gets tokens for itself, not for the API.
    let own = oidc::register(&app, &admin, json!({ "first_party": true })).await;
    let token = code_flow_token(&app, &own, &user).await;
    assert_eq!(claims(&token)["aud"], own.id.as_str());
    assert_eq!(app.get_with("/api/v1/sessions", &token).await.status(), 401);

    // Registered for the API, its token acts as the admin on every API route.
    let rp = oidc::register(&app, &admin, json!({ "first_party": true, "audience": api })).await;
    let token = code_flow_token(&app, &rp, &user).await;
    assert_eq!(claims(&token)["aud"], api.as_str());
    let mut walked = 0;
    for route in api_routes().filter(|r| !is_open(r.access()) && r.template != "/api/v1/auth/logout-all") {
        let resp =
            request(&app.client, route, app.url(&concrete(route))).bearer_auth(&token).send().await.expect("send");
        let status = resp.status().as_u16();
        assert!(
            status != 401 && status != 403,
            "{} {} refused a first-party token: {status}",
            route.method,
            route.template
        );
        walked += 1;
    }
    // Every route the walk above refused a third-party token on, but logout-all (tried last).
    assert_eq!(walked, api_routes().filter(|r| !is_open(r.access())).count() - 1, "walked {walked}");
    assert_eq!(app.get_with("/api/v1/clients", &token).await.status(), 200);

    // Once its registration no longer names the API, the same token is refused there at once.
    let mut metadata = rp.body.clone();
    metadata["audience"] = json!("https://elsewhere.example");
    let resp = app.call(Method::PUT, &format!("/api/v1/clients/{}", rp.id), Some(&admin.access), Some(&metadata)).await;
    assert_eq!(resp.status(), 200, "re-pointed");
    assert_eq!(app.get_with("/api/v1/sessions", &token).await.status(), 401, "no longer meant for the API");
}
