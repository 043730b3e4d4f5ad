//! The route table and the matcher. One table lists every route as (method, template, id,
//! access, rate-limit class); the dispatcher in `crate::routes` applies the limit, decides the
//! access and then calls the handler the id names; the access log and metrics label requests
//! with the template (never the raw path); the OpenAPI parity test and the access test walk the
//! same table.
//!
//! Architecture Invariant: a route's access is declared here and nowhere else. [`def`] takes
//! it as an argument, so a route without one does not compile, and no handler checks roles.

use std::collections::HashMap;
use std::sync::LazyLock;

use hyper::Method;

use super::error::ApiError;
use crate::flows::authenticate::Access;
use crate::flows::limits::Class;

/// Every route the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Jwks,
    OpenidConfiguration,
    AuthorizationServer,
    Introspect,
    Revoke,
    Signup,
    Login,
    LoginJson,
    Refresh,
    Logout,
    LogoutAll,
    LoginHistory,
    UpdateProfile,
    DeleteUser,
    Sessions,
    RevokeSession,
    CreateRole,
    ListRoles,
    UpdateRole,
    DeleteRole,
    AssignRole,
    RemoveRole,
    CheckRole,
    Me,
    ListUserRoles,
    AdminEvents,
    OAuthToken,
    OAuthIntrospect,
    OAuthRevoke,
    CreateClient,
    ListClients,
    GetClient,
    UpdateClient,
    DeleteClient,
    RotateClientSecret,
    Authorize,
    SignIn,
    Consent,
    EndSession,
    ConfirmEndSession,
    UserInfo,
    UserInfoPost,
    Stylesheet,
    ListConsents,
    RevokeConsent,
    /// Makes an actor fail on purpose. Compiled only with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    TestFail,
}

/// One entry of the route table.
#[derive(Debug)]
pub struct RouteDef {
    pub method: Method,
    /// Path with `{name}` placeholders, as in the OpenAPI document.
    pub template: &'static str,
    pub id: RouteId,
    /// Who may call it, decided before the handler runs.
    pub access: Access,
    /// Which per-IP rate limit it counts against.
    pub class: Class,
}

const fn def(method: Method, template: &'static str, id: RouteId, access: Access, class: Class) -> RouteDef {
    RouteDef { method, template, id, access, class }
}

use Access::{
    Admin, AdminOrService, Bearer, Browser, Client, Introspector, OptionalBearer, OptionalClient, Public, UserInfo,
};
use auth_actors::keyspace::LimitClass::{
    Default as DEFAULT, Login as LOGIN, Refresh as REFRESH, Signup as SIGNUP, Token as TOKEN,
};
const EXEMPT: Class = Class::Exempt;
const fn limited(class: auth_actors::keyspace::LimitClass) -> Class {
    Class::Limited(class)
}

/// The route table.
pub static ROUTES: &[RouteDef] = &[
    def(Method::GET, "/api/v1/healthz", RouteId::Healthz, Public, EXEMPT),
    def(Method::GET, "/api/v1/readyz", RouteId::Readyz, Public, EXEMPT),
    def(Method::GET, "/metrics", RouteId::Metrics, Public, EXEMPT),
    def(Method::GET, "/openapi.json", RouteId::OpenApi, Public, EXEMPT),
    def(Method::GET, "/.well-known/jwks.json", RouteId::Jwks, Public, EXEMPT),
    def(Method::GET, "/.well-known/openid-configuration", RouteId::OpenidConfiguration, Public, EXEMPT),
    def(Method::GET, "/.well-known/oauth-authorization-server", RouteId::AuthorizationServer, Public, EXEMPT),
    def(Method::POST, "/api/v1/auth/introspect", RouteId::Introspect, Introspector, limited(DEFAULT)),
    def(Method::POST, "/api/v1/auth/revoke", RouteId::Revoke, OptionalClient, limited(DEFAULT)),
    def(Method::POST, "/api/v1/users/signup", RouteId::Signup, Public, limited(SIGNUP)),
    def(Method::POST, "/api/v1/auth/login", RouteId::Login, Public, limited(LOGIN)),
    def(Method::POST, "/api/v1/auth/login-json", RouteId::LoginJson, Public, limited(LOGIN)),
    def(Method::POST, "/api/v1/auth/refresh", RouteId::Refresh, Public, limited(REFRESH)),
    def(Method::POST, "/api/v1/auth/logout", RouteId::Logout, Public, limited(DEFAULT)),
    def(Method::POST, "/api/v1/auth/logout-all", RouteId::LogoutAll, Bearer, limited(DEFAULT)),
    def(Method::GET, "/api/v1/users/user/history", RouteId::LoginHistory, Bearer, limited(DEFAULT)),
    def(Method::PATCH, "/api/v1/users/auth/update", RouteId::UpdateProfile, Bearer, limited(DEFAULT)),
    def(Method::DELETE, "/api/v1/users/{user_id}", RouteId::DeleteUser, Admin, limited(DEFAULT)),
    def(Method::GET, "/api/v1/sessions", RouteId::Sessions, Bearer, limited(DEFAULT)),
    def(Method::DELETE, "/api/v1/sessions/{id}", RouteId::RevokeSession, Bearer, limited(DEFAULT)),
    def(Method::POST, "/api/v1/roles/create", RouteId::CreateRole, Admin, limited(DEFAULT)),
    def(Method::GET, "/api/v1/roles/list", RouteId::ListRoles, Bearer, limited(DEFAULT)),
    def(Method::PUT, "/api/v1/roles/update/{role_id}", RouteId::UpdateRole, Admin, limited(DEFAULT)),
    def(Method::DELETE, "/api/v1/roles/delete/{role_id}", RouteId::DeleteRole, Admin, limited(DEFAULT)),
    def(Method::POST, "/api/v1/user_roles/assign", RouteId::AssignRole, Admin, limited(DEFAULT)),
    def(Method::DELETE, "/api/v1/user_roles/{user_id}/roles/{role_id}", RouteId::RemoveRole, Admin, limited(DEFAULT)),
    def(Method::POST, "/api/v1/user_roles/check", RouteId::CheckRole, AdminOrService, limited(DEFAULT)),
    def(Method::GET, "/api/v1/user_roles/me", RouteId::Me, OptionalBearer, limited(DEFAULT)),
    def(Method::GET, "/api/v1/user_roles/list", RouteId::ListUserRoles, Admin, limited(DEFAULT)),
    def(Method::GET, "/api/v1/admin/events", RouteId::AdminEvents, Admin, limited(DEFAULT)),
    def(Method::POST, "/oauth2/token", RouteId::OAuthToken, Client, limited(TOKEN)),
    def(Method::POST, "/oauth2/introspect", RouteId::OAuthIntrospect, Introspector, limited(TOKEN)),
    def(Method::POST, "/oauth2/revoke", RouteId::OAuthRevoke, Client, limited(TOKEN)),
    def(Method::POST, "/api/v1/clients", RouteId::CreateClient, Admin, limited(DEFAULT)),
    def(Method::GET, "/api/v1/clients", RouteId::ListClients, Admin, limited(DEFAULT)),
    def(Method::GET, "/api/v1/clients/{client_id}", RouteId::GetClient, Admin, limited(DEFAULT)),
    def(Method::PUT, "/api/v1/clients/{client_id}", RouteId::UpdateClient, Admin, limited(DEFAULT)),
    def(Method::DELETE, "/api/v1/clients/{client_id}", RouteId::DeleteClient, Admin, limited(DEFAULT)),
    def(
        Method::POST,
        "/api/v1/clients/{client_id}/rotate-secret",
        RouteId::RotateClientSecret,
        Admin,
        limited(DEFAULT),
    ),
    def(Method::GET, "/oauth2/authorize", RouteId::Authorize, Browser, limited(DEFAULT)),
    def(Method::POST, "/oauth2/authorize", RouteId::SignIn, Browser, limited(LOGIN)),
    def(Method::POST, "/oauth2/consent", RouteId::Consent, Browser, limited(DEFAULT)),
    def(Method::GET, "/oauth2/logout", RouteId::EndSession, Browser, limited(DEFAULT)),
    def(Method::POST, "/oauth2/logout", RouteId::ConfirmEndSession, Browser, limited(DEFAULT)),
    def(Method::GET, "/oauth2/userinfo", RouteId::UserInfo, UserInfo, limited(DEFAULT)),
    def(Method::POST, "/oauth2/userinfo", RouteId::UserInfoPost, UserInfo, limited(DEFAULT)),
    def(Method::GET, "/oauth2/assets/{asset}", RouteId::Stylesheet, Public, EXEMPT),
    def(Method::GET, "/api/v1/consents", RouteId::ListConsents, Bearer, limited(DEFAULT)),
    def(Method::DELETE, "/api/v1/consents/{client_id}", RouteId::RevokeConsent, Bearer, limited(DEFAULT)),
    #[cfg(feature = "test-hooks")]
    def(Method::POST, "/api/v1/_test/fail/{actor}", RouteId::TestFail, Public, EXEMPT),
];

/// Routes that are not part of the public API (left out of the OpenAPI document).
pub fn is_internal(template: &str) -> bool {
    template.starts_with("/api/v1/_test/")
}

/// Routes without placeholders, by method and path: the common case is one hash lookup.
static STATIC_ROUTES: LazyLock<HashMap<(Method, &'static str), &'static RouteDef>> = LazyLock::new(|| {
    ROUTES.iter().filter(|r| !r.template.contains('{')).map(|r| ((r.method.clone(), r.template), r)).collect()
});

/// Finds the route for `method` and `path`, with the values of its placeholders.
/// A path that exists under another method is 405; anything else is 404.
pub fn find(method: &Method, path: &str) -> Result<(&'static RouteDef, Vec<String>), ApiError> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    if let Some(route) = STATIC_ROUTES.get(&(method.clone(), path)) {
        return Ok((route, Vec::new()));
    }
    let mut allowed: Vec<&'static str> = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_template(route.template, path) {
            if route.method == method {
                return Ok((route, params));
            }
            allowed.push(route.method.as_str());
            if route.method == Method::GET {
                allowed.push("HEAD");
            }
        }
    }
    if allowed.is_empty() {
        Err(ApiError::NotFound("no such route".into()))
    } else {
        Err(ApiError::MethodNotAllowed(allowed.join(", ")))
    }
}

fn match_template(template: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return None;
                }
                params.push(ps.to_string());
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments_only() {
        assert_eq!(match_template("/a/{id}/b", "/a/42/b"), Some(vec!["42".to_string()]));
        assert_eq!(match_template("/a/{id}/b", "/a//b"), None);
        assert_eq!(match_template("/a/{id}", "/a/1/extra"), None);
        assert_eq!(match_template("/api/v1/healthz", "/api/v1/healthz/"), None);
    }

    #[test]
    fn a_known_path_under_the_wrong_method_is_405() {
        assert!(
            matches!(find(&Method::DELETE, "/api/v1/healthz"), Err(ApiError::MethodNotAllowed(a)) if a == "GET, HEAD")
        );
        assert!(matches!(find(&Method::GET, "/nope"), Err(ApiError::NotFound(_))));
    }
}
